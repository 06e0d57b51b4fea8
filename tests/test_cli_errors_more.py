"""Issue 17's table: every bad input or runtime failure ends in one line
``spikelfp COMMAND: error: ...`` on stderr (exit 2 for bad input, 1 for runtime failures), no
traceback, and nothing already written is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import _cli
import pytest
import torch
from torch import nn

from spikelfp.cli import main

TINY = [*_cli.TINY, "--max-eval-samples", "20"]


@pytest.fixture(scope="module")
def base_run(digits_root, tmp_path_factory) -> Path:
    """A finished one-epoch run, trained from a folder given by a relative ``--data-dir``."""
    work = tmp_path_factory.mktemp("more-errors")
    (work / "data").symlink_to(digits_root, target_is_directory=True)
    res = _spikelfp("train", "--data-dir", "data", *TINY, "--out", "run", cwd=work)
    assert res.returncode == 0, res.stderr[-2000:]
    return work / "run"


@pytest.fixture
def run_copy(base_run, tmp_path) -> Path:
    """A copy of the finished run that a test may try to damage."""
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def _spikelfp(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spikelfp", *args],
        capture_output=True,
        text=True,
        env=_env(**env),
        cwd=cwd,
        timeout=300,
    )


def _error_line(res: subprocess.CompletedProcess, command: str, code: int = 2) -> str:
    """The one stderr line of a failed command (after any status lines of a training run)."""
    assert res.returncode == code, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1, res.stderr[-2000:]
    assert errors[0] == res.stderr.splitlines()[-1]
    assert errors[0].startswith(f"spikelfp {command}: error: "), errors[0]
    assert "\x1b" not in errors[0]
    return errors[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- learning rate and divergence -----------------------------------------------------------------
@pytest.mark.parametrize(
    "flags", [["--lr", "inf"], ["--lr", "nan"], ["--lr", "1e39", "--optimizer", "sgd"]]
)
def test_non_finite_lr_refused_up_front(tmp_path, flags):
    res = _spikelfp("train", *flags, *TINY, "--out", str(tmp_path / "run"))
    line = _error_line(res, "train")
    assert "lr must be a finite number" in line, line
    assert res.stderr.count("\n") == 1  # nothing trained: no status lines either
    assert not (tmp_path / "run").exists()


def test_divergence_stops_with_one_line_and_keeps_the_checkpoint(run_copy):
    """A run that diverges in its first batch (weights overflow to inf) stops at once, exit 1;
    the checkpoint already in the folder is not replaced."""
    before = (run_copy / "checkpoint.pt").read_bytes()
    res = _spikelfp(
        "train",
        *TINY,
        "--lr",
        "1e38",
        "--optimizer",
        "sgd",
        "--overwrite",
        "--out",
        str(run_copy),
    )
    line = _error_line(res, "train", code=1)
    assert "training diverged" in line and "NaN or infinite" in line, line
    assert "epoch 1" in line and "--lr" in line, line
    assert (run_copy / "checkpoint.pt").read_bytes() == before


def test_divergence_after_a_good_epoch_keeps_that_epoch(digits_root, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    args = ["train", "--data-dir", str(digits_root), *TINY, "--lr-schedule", "none"]
    assert main([*args, "--out", str(run)]) == 0
    capsys.readouterr()
    saved = _files(run)

    step = torch.optim.Adam.step

    def poisoned_step(self, *a, **k):  # the update of epoch 2 turns a weight into NaN
        out = step(self, *a, **k)
        self.param_groups[0]["params"][0].data.view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", poisoned_step)
    rc = main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("spikelfp train: error: training diverged: the weights"), err
    assert "batch 1 of epoch 2" in lines[0], err
    assert f"last good checkpoint (epoch 1) is kept in {run}" in lines[0], err
    after = _files(run)
    assert after["checkpoint.pt"] == saved["checkpoint.pt"]
    assert after["metrics.jsonl"] == saved["metrics.jsonl"]
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_epochs_zero_refused(tmp_path):
    res = _spikelfp("train", *TINY, "--epochs", "0", "--out", str(tmp_path / "run"))
    line = _error_line(res, "train")
    assert "--epochs 0 trains nothing" in line, line
    assert not (tmp_path / "run").exists()


# -- outputs and inputs that cannot be used --------------------------------------------------------
def test_out_under_a_file(tmp_path):
    (tmp_path / "a-file").write_text("keep me")
    res = _spikelfp("train", *TINY, "--out", str(tmp_path / "a-file" / "run"))
    line = _error_line(res, "train")
    assert f"--out {tmp_path / 'a-file' / 'run'}" in line and "is a file, not a folder" in line
    assert res.stderr.count("\n") == 1  # refused before the data were opened
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_out_unwritable(tmp_path, capsys, monkeypatch):
    """A folder without write permission (faked: the tests may run as root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: Path(p) != locked and real_access(p, m))
    assert main(["train", *TINY, "--out", str(locked / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"spikelfp train: error: cannot write the run folder --out {locked}")
    assert "not writable" in err
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_out_where_even_root_cannot_write(tmp_path, capsys):
    assert main(["train", *TINY, "--out", "/proc/spikelfp-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/proc is not writable" in err, err


@pytest.mark.parametrize("command", ["eval", "export"])
def test_json_unwritable(base_run, tmp_path, command):
    (tmp_path / "a-file").write_text("keep me")
    target = tmp_path / "a-file" / "report.json"
    res = _spikelfp(command, str(base_run), "--json", str(target), cwd=tmp_path)
    line = _error_line(res, command)
    assert f"cannot write --json {target}" in line and "is a file, not a folder" in line
    assert res.stdout == ""  # refused before the evaluation / export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no net.nir either


def test_json_is_a_folder(base_run, tmp_path, capsys):
    assert main(["eval", str(base_run), "--json", str(tmp_path)]) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.count("\n") == 1 and "is a folder" in err.err


def test_data_dir_is_a_file(tmp_path):
    (tmp_path / "a-file").write_text("")
    file = str(tmp_path / "a-file")
    res = _spikelfp("train", "--dataset", "nmnist", "--data-dir", file, "--out", str(tmp_path))
    line = _error_line(res, "train")
    assert f"--data-dir {file} is a file, not a folder" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_data_dir_unreadable(tmp_path, capsys, monkeypatch):
    """A folder without read permission (faked: the tests may run as root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: Path(p) != locked and real_access(p, m))
    rc = main(
        ["train", "--dataset", "nmnist", "--data-dir", str(locked), "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"--data-dir {locked} is not readable" in err
    assert not (tmp_path / "r").exists()


def test_spikelfp_home_unusable(tmp_path):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    res = _spikelfp("train", *TINY, "--out", str(tmp_path / "run"), SPIKELFP_HOME=str(home))
    line = _error_line(res, "train")
    assert f"SPIKELFP_HOME={home}" in line and f"{home} is a file, not a folder" in line, line
    assert "--data-dir" in line
    assert not (tmp_path / "run").exists()


# -- export settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--bits", "1"], "--bits must be in 2..31"),
        (["--bits", "33"], "--bits must be in 2..31"),
        (["--dt", "0"], "--dt must be a positive time step"),
        (["--dt", "-1"], "--dt must be a positive time step"),
        (["--target", "tpu"], "unknown --target 'tpu'; choose one of int8, loihi2, speck, xylo"),
    ],
)
def test_export_settings_refused(base_run, tmp_path, flags, needle):
    res = _spikelfp("export", str(base_run), *flags, cwd=tmp_path)
    line = _error_line(res, "export")
    assert needle in line, line
    assert list(tmp_path.iterdir()) == []


# -- a reader that leaves early --------------------------------------------------------------------
def test_info_into_a_closed_pipe(base_run):
    """``spikelfp info RUN | head -3``: the reader is gone; no BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spikelfp", "info", str(base_run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 1
    assert err == ""


# -- resume on other data --------------------------------------------------------------------------
def test_config_stores_absolute_paths(base_run, digits_root):
    cfg = torch.load(base_run / "checkpoint.pt", weights_only=True)["config"]
    assert cfg["data_dir"] == str(digits_root.resolve())  # given as the relative "data"
    assert Path(cfg["out"]).is_absolute()


def test_resume_with_other_data_refused(run_copy, digits_root, tmp_path):
    other = Path(shutil.copytree(digits_root, tmp_path / "other-data"))
    before = _files(run_copy)
    res = _spikelfp("train", "--resume", str(run_copy), "--data-dir", str(other))
    line = _error_line(res, "train")
    assert f"--data-dir {other} differs from the run's {digits_root.resolve()}" in line, line
    assert "--allow-data-change" in line
    assert _files(run_copy) == before

    # the same folder, written differently, is no change; --allow-data-change accepts the new one
    assert main(["train", "--resume", str(run_copy), "--data-dir", f"{digits_root}/."]) == 0
    flags = ["--data-dir", str(other), "--allow-data-change"]
    assert main(["train", "--resume", str(run_copy), *flags]) == 0
    stored = (run_copy / "config.yaml").read_text()
    assert f"data_dir: {other.resolve()}" in stored


# -- checkpoint errors -----------------------------------------------------------------------------
class _Custom:  # a pickled object that a weights-only load refuses
    pass


def test_checkpoint_errors_are_whole_and_plain(base_run, tmp_path):
    bad = tmp_path / "objects.pt"
    torch.save({"format": "spikelfp-checkpoint", "obj": _Custom()}, bad)
    cut = tmp_path / "truncated.pt"
    data = (base_run / "checkpoint.pt").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    for path, needle in [
        (bad, "a safe (weights-only) load refuses: Unsupported global: GLOBAL"),
        (cut, "the file is truncated or corrupted: PytorchStreamReader failed reading zip"),
    ]:
        res = _spikelfp("info", str(path))
        line = _error_line(res, "info")
        assert needle in line, line
        assert line.endswith(")") and "..." not in line, line  # a whole clause, not cut


def test_error_text_strips_ansi_and_cuts_at_a_word():
    from spikelfp.training.checkpoint import error_text

    text = error_text(RuntimeError("\x1b[1mbold\x1b[0m " + "word " * 100))
    assert "\x1b" not in text and text.startswith("bold word")
    assert len(text) <= 203 and text.endswith("word...")


# -- the Python API --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "needle"),
    [
        ("LIF(beta=1.5)", "LIF: beta must be in [0, 1], got 1.5"),
        ("LIF(threshold=-1)", "LIF: threshold must be > 0, got -1"),
        ("LIF(beta=0.5, tau=10e-3, dt=1e-3)", "give either beta or (tau and dt), not both"),
        ("LI(beta=0.5, tau=10e-3, dt=1e-3)", "give either beta or (tau and dt), not both"),
        ("LI(beta=-0.1)", "LI: beta must be in [0, 1]"),
        ("IF(threshold=0)", "IF: threshold must be > 0"),
        ("CubaLIF(alpha=1.2)", "CubaLIF: alpha must be in [0, 1]"),
        ("CubaLIF(threshold=-0.5)", "CubaLIF: threshold must be > 0"),
        ("ALIF(rho=2.0)", "ALIF: rho must be in [0, 1]"),
        ("ALIF(kappa=-1.0)", "ALIF: kappa must be >= 0"),
        ("RLIF(4, beta=1.01)", "RLIF: beta must be in [0, 1]"),
        ("LIF(beta=torch.tensor([0.5, 1.5]))", "LIF: beta must be in [0, 1] (every neuron's"),
    ],
)
def test_neuron_parameters_checked(make, needle):
    from spikelfp.neurons import ALIF, IF, LI, LIF, RLIF, CubaLIF  # noqa: F401 - used by eval

    with pytest.raises(ValueError) as info:
        eval(make)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_neuron_defaults_and_time_constants_still_work():
    from spikelfp.neurons import LI, LIF

    assert float(LIF().beta) == pytest.approx(0.9)
    assert float(LIF(tau=10e-3, dt=1e-3).beta) == pytest.approx(0.904837, abs=1e-6)
    assert float(LI(tau=1.0, dt=1.0).beta) == pytest.approx(0.367879, abs=1e-6)
    assert float(LIF(beta=1.0, threshold=0.2).beta) == 1.0


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_lfp_step_without_time_axis(model):
    from spikelfp.lfp import lfp_step, rate_coded_reward
    from spikelfp.training.models import ModelSpec, build_model

    net = build_model(ModelSpec(name=model, input_shape=(2, 34, 34), n_classes=10, hidden=16))
    x = (torch.rand(8, 2, 34, 34) < 0.2).float()  # (B, C, H, W): no time axis
    y = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"x must be time-first \(T, B, \.\.\.\)") as info:
        lfp_step(net, x, y, rate_coded_reward)
    assert "(8, 2, 34, 34)" in str(info.value)
    lfp_step(net, x.unsqueeze(0), y, rate_coded_reward)  # with it: fine


def test_lfp_step_other_errors_unchanged():
    from spikelfp.lfp import lfp_step, rate_coded_reward

    class Boom(nn.Module):  # a container (its Linear has a rule) that fails for another reason
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="^boom$"):
        lfp_step(Boom(), torch.zeros(2, 1, 3), [0], rate_coded_reward)


def test_metrics_history_is_json(base_run):  # the base run itself is sound
    rows = [json.loads(line) for line in (base_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
