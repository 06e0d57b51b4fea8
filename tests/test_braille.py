"""Tactile Braille: the dataset (npz and restricted pickle), sensor encoders, zoo models, CLI."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _cli import one_line_error

from spikelfp.cli import main
from spikelfp.datasets import (
    Braille,
    Resample,
    SensorCurrent,
    SensorPipeline,
    SigmaDelta,
    UnsafePickleError,
)
from spikelfp.datasets.braille import BRAILLE_LETTERS, NIR_LETTERS, load_restricted_pickle
from spikelfp.datasets.errors import CorruptRecordingError, DatasetNotFoundError
from spikelfp.neurons import RLIF
from spikelfp.training.models import ModelSpec, build_model


def _fake(n_rep: int = 4, letters=("Space", "A", "E"), steps: int = 10, seed: int = 0):
    """A small dataset in the npz layout: letter ``k`` presses taxel ``k`` in the middle."""
    rng = np.random.default_rng(seed)
    rows, labels, names, reps = [], [], [], []
    for k, name in enumerate(letters):
        for r in range(n_rep):
            x = np.full((steps, 12), 255.0, dtype=np.float32)
            x[3:7, k] = 255.0 - 40.0 - rng.integers(0, 5)
            rows.append(x)
            labels.append(k)
            names.append(name)
            reps.append(r)
    taxel = np.stack(rows)
    length = np.full(len(rows), steps, dtype=np.int64)
    length[::2] = steps - 1  # some recordings one step shorter: NaN past the end
    for i in range(0, len(rows), 2):
        taxel[i, steps - 1] = np.nan
    return {
        "taxel": taxel,
        "length": length,
        "label": np.array(labels, dtype=np.int64),
        "letter": np.array(names),
        "repetition": np.array(reps, dtype=np.int64),
        "letters": np.array(letters),
    }


def _write(folder: Path, data: dict, name: str = "train.npz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / name, **data)
    return folder


# -- sensor encoders ------------------------------------------------------------------------


def test_sigma_delta_tracks_the_signal_within_threshold():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(0, 2.0, size=(200, 3)), axis=0)
    theta = 1.5
    enc = SigmaDelta(theta)
    on, off = enc.events(x)
    recon = x[0] + theta * np.cumsum(on - off, axis=0)
    assert np.all(np.abs(x - recon) < theta + 1e-9)
    out = enc(x)
    assert out.shape == (200, 6) and out.dtype == torch.float32
    assert torch.equal(out[:, :3], torch.from_numpy(on).float())
    merged = SigmaDelta(theta, merge=True)(x)
    assert merged.shape == (200, 3)
    assert torch.equal(merged, out[:, :3] + out[:, 3:])
    binary = SigmaDelta(theta, merge=True, binary=True)(x)
    assert torch.equal(binary, (merged > 0).float())


def test_sigma_delta_exact_on_integer_signals():
    # taxel readings are integers: with theta = 1 the events reconstruct the signal exactly
    x = np.array([[255], [255], [250], [251], [251], [240]], dtype=np.float32)
    on, off = SigmaDelta(1.0).events(x)
    assert (on[:, 0].tolist(), off[:, 0].tolist()) == ([0, 0, 0, 1, 0, 0], [0, 0, 5, 0, 0, 11])


def test_resample_and_current():
    x = torch.arange(10.0).reshape(5, 2)
    summed = Resample(bin_width=2)(x)
    assert summed.shape == (3, 2) and torch.equal(summed.sum(0), x.sum(0))
    assert Resample(5.0, sample_period=2.5, reduce="mean")(x)[:, 0].tolist() == [1.0, 5.0, 8.0]
    assert SensorCurrent(scale=-1 / 255, offset=255)(np.array([[255.0, 0.0]])).tolist() == [
        [-0.0, 1.0]
    ]
    pipe = SensorPipeline([SigmaDelta(1.0, merge=True), Resample(2)])
    assert pipe(torch.tensor([0.0, 1.0, 2.0, 2.0])).tolist() == [[1.0], [1.0]]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SigmaDelta(threshold=0), "threshold must be a number > 0"),
        (lambda: SigmaDelta(merge="yes"), "merge must be True or False"),
        (lambda: Resample(bin_width=-1), "bin_width must be a number > 0"),
        (lambda: Resample(reduce="max"), "reduce must be one of sum, mean"),
        (lambda: SigmaDelta()(np.zeros((2, 2, 2))), "expects a signal (T, C)"),
        (lambda: SigmaDelta()(np.array([[0.0], [np.nan]])), "non-finite value at step 1"),
    ],
)
def test_encoder_errors(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value) and "\n" not in str(info.value)


# -- the dataset ----------------------------------------------------------------------------


def test_npz_letters_split_and_encoding(tmp_path):
    root = _write(tmp_path / "b", _fake(n_rep=5))
    ds = Braille(root, letters="a, space", encoding=SigmaDelta(1.0, merge=True))
    assert ds.classes == ("Space", "A") and len(ds) == 10
    assert ds.targets == [0] * 5 + [1] * 5
    frames, label = ds[0]
    assert frames.shape == (9, 12) and label == 0  # cropped to its valid length
    # Space presses taxel 0: one OFF-or-ON event where the press starts and where it ends
    assert (frames[:, 0] > 0).tolist() == [False] * 3 + [True] + [False] * 3 + [True, False]
    assert float(frames[3, 0]) == float(frames[7, 0]) >= 40  # press and release: 40+ events
    assert frames[:, 1:].sum() == 0
    raw = Braille(root, encoding=None)
    assert np.array_equal(raw[1][0].numpy(), raw.signal(1))
    assert Braille(root)[0][0].shape == (9, 24)  # default: ON and OFF channels
    split = Braille(root).repetition_split(0.4, seed=3)
    again = Braille(root).repetition_split(0.4, seed=3)
    assert np.array_equal(split.val, again.val) and not set(split.val) & set(split.train)
    # letters="all": labels index all 27 letters (E is 5)
    assert np.bincount(np.asarray(Braille(root).targets)[split.val]).tolist() == [2, 2, 0, 0, 0, 2]


def test_taxel_subset(tmp_path):
    root = _write(tmp_path / "b", _fake())
    ds = Braille(root, taxels=(2, 0), encoding=None)
    assert ds.taxels == (2, 0) and ds[0][0].shape == (9, 2)
    full = Braille(root, encoding=None)
    assert np.array_equal(ds.signal(4), full.signal(4)[:, [2, 0]])
    assert Braille(root, taxels=[1, 2])[0][0].shape == (9, 4)  # ON/OFF of two taxels
    for bad in ([], [12], [1, 1], [True]):
        with pytest.raises(ValueError, match="taxels must"):
            Braille(root, taxels=bad)


def test_unknown_letters_one_error(tmp_path):
    root = _write(tmp_path / "b", _fake())
    with pytest.raises(ValueError) as info:
        Braille(root, letters="Space,A,Q9,ae")
    msg = str(info.value)
    assert "'Q9', 'ae'" in msg and ", ".join(BRAILLE_LETTERS) in msg and "\n" not in msg


def test_wrong_taxel_shape_names_the_file(tmp_path):
    data = _fake()
    data["taxel"] = data["taxel"][:, :, :10]
    root = _write(tmp_path / "b", data)
    with pytest.raises(CorruptRecordingError, match=r"train\.npz: taxel data must be .*12\)"):
        Braille(root)


def test_nan_inside_valid_length_names_file_and_sample(tmp_path):
    data = _fake()
    data["taxel"][5, 4, 7] = np.nan  # sample 5 has its full length: step 4 is inside
    root = _write(tmp_path / "b", data)
    with pytest.raises(CorruptRecordingError) as info:
        Braille(root)
    msg = str(info.value)
    assert "train.npz" in msg and "sample 5" in msg and "step 4" in msg


def test_missing_split_and_object_arrays(tmp_path):
    root = _write(tmp_path / "b", _fake())
    with pytest.raises(DatasetNotFoundError, match="no test.npz"):
        Braille(root, split="test")
    data = _fake()
    data["letter"] = data["letter"].astype(object)
    bad = _write(tmp_path / "c", data)
    with pytest.raises(CorruptRecordingError, match="without unpickling"):
        Braille(bad)


def _release_records(n_rep=3):
    data = _fake(n_rep=n_rep)
    return [
        {"taxel_data": data["taxel"][i, : data["length"][i]].astype(np.float64), "letter": name}
        for i, name in enumerate(data["letter"].tolist())
    ], data


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_release_pickle_is_read(tmp_path, protocol):
    records, data = _release_records()
    folder = tmp_path / "rel"
    folder.mkdir()
    with gzip.open(folder / "braille.pkl.gz", "wb") as f:
        pickle.dump(records, f, protocol=protocol)
    ds = Braille(folder, encoding=None)
    npz = Braille(_write(tmp_path / "npz", data), encoding=None)
    assert len(ds) == len(npz) and ds.targets == npz.targets
    assert ds.repetitions.tolist() == data["repetition"].tolist()
    for i in range(len(ds)):
        assert np.array_equal(ds[i][0].numpy(), npz[i][0].numpy())
    columns = {"taxel_data": [r["taxel_data"] for r in records], "letter": data["letter"]}
    (folder / "braille.pkl.gz").unlink()
    (folder / "cols.pkl").write_bytes(pickle.dumps(columns, protocol=protocol))
    assert Braille(folder).targets == npz.targets


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_untrusted_pickle_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([{"taxel_data": _Evil(str(marker)), "letter": "A"}]))
    with pytest.raises(UnsafePickleError) as info:
        Braille(evil)
    assert not marker.exists()
    msg = str(info.value)
    assert "evil.pkl" in msg and "posix.mkdir" in msg and "\n" not in msg
    evil.write_bytes(pickle.dumps(torch.nn.Linear(2, 2)))
    with pytest.raises(UnsafePickleError):
        load_restricted_pickle(evil)
    evil.write_bytes(b"not a pickle at all")
    with pytest.raises(CorruptRecordingError, match="evil.pkl: not a readable pickle"):
        load_restricted_pickle(evil)


def test_real_braille(shared_data):
    root = shared_data / "braille"
    if not (root / "train.npz").is_file():
        pytest.skip(f"no Braille recordings in {root}")
    ds = Braille(root)
    assert len(ds) == 1080 and ds.classes == BRAILLE_LETTERS and ds.frame_shape == (24,)
    assert set(np.unique(ds.lengths)) <= {76, 77}
    nir = Braille(root, letters=",".join(NIR_LETTERS))
    assert len(nir) == 280 and np.bincount(nir.targets).tolist() == [40] * 7
    split = nir.repetition_split(0.2, seed=0)
    assert np.bincount(np.asarray(nir.targets)[split.val]).tolist() == [8] * 7
    counts = torch.stack([ds[i][0].sum(0) for i in range(0, 1080, 40)])
    assert 250 < float(counts.sum(1).mean()) < 400  # ~310 ON/OFF events per recording
    still = [c + off for off in (0, 12) for c in (0, 3, 4, 5, 7, 8, 9, 11)]
    assert int(counts[:, still].sum()) == 0  # only taxels 1, 2, 6 and 10 move


# -- models and the command line ------------------------------------------------------------


def test_braille_models_shapes():
    net = build_model(ModelSpec("braille-rsnn", (12,), 7, reset="subtract"))
    assert isinstance(net[1], RLIF) and net[1].size == 40 and len(net) == 4
    out, _ = net(torch.rand(20, 3, 12))
    assert out.shape == (20, 3, 7)
    mlp = build_model(ModelSpec("braille-mlp", (24,), 27, hidden=16))
    assert mlp(torch.rand(5, 2, 24))[0].shape == (5, 2, 27)
    framed = build_model(ModelSpec("braille-rsnn", (2, 4, 4), 3, hidden=8))
    assert type(framed[0]).__name__ == "Flatten"
    with pytest.raises(ValueError, match=r"braille-rsnn takes input_shape \(C,\)"):
        build_model(ModelSpec("braille-rsnn", (12, 3), 7))


def test_recurrent_weights_get_lfp_feedback():
    from spikelfp.lfp import lfp_step, rate_coded_reward

    torch.manual_seed(0)
    net = build_model(ModelSpec("braille-rsnn", (12,), 3, hidden=16, reset="subtract"))
    x = (torch.rand(30, 8, 12) < 0.3).float()
    y = torch.arange(8) % 3
    w_rec = net[1].recurrent_weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    lfp_step(net, x, y, lambda o, t: rate_coded_reward(o, t, scale=1 / 30), opt)
    assert net[1].recurrent_weight.grad is not None
    assert float(net[1].recurrent_weight.grad.abs().sum()) > 0
    assert not torch.equal(net[1].recurrent_weight.detach(), w_rec)


def test_cli_trains_and_evaluates_braille(tmp_path, capsys):
    root = _write(tmp_path / "b", _fake(n_rep=10))
    out = tmp_path / "run"
    argv = ["train", "--dataset", "braille", "--data-dir", str(root), "--letters", "Space,A,E"]
    argv += ["--epochs", "12", "--no-progress", "--out", str(out), "--seed", "0"]
    argv += ["--taxels", "0", "1", "2"]  # the pressed ones: 6 inputs
    assert main(argv) == 0
    assert main(["eval", str(out), "--split", "val", "--json", str(tmp_path / "e.json")]) == 0
    import json

    result = json.loads((tmp_path / "e.json").read_text())
    assert result["classes"] == ["Space", "A", "E"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["model_spec"]["input_shape"] == [6]
    assert result["accuracy"] >= 0.8  # 6 val samples of an easy synthetic task


def test_cli_bad_letters_and_pickle(tmp_path, capsys):
    root = _write(tmp_path / "b", _fake())
    base = ["train", "--dataset", "braille", "--data-dir", str(root), "--out", str(tmp_path / "r")]
    line = one_line_error(capsys, [*base, "--letters", "Space,Q7"])
    assert "'Q7'" in line and "Space, A, B" in line
    line = one_line_error(capsys, [*base, "--encoding", "rate"])
    assert "sigma-delta" in line
    line = one_line_error(capsys, [*base, "--taxels", "1", "12"])
    assert "taxels must be distinct indices in 0..11" in line
    evil = tmp_path / "e"
    evil.mkdir()
    (evil / "x.pkl").write_bytes(pickle.dumps([{"taxel_data": _Evil(str(tmp_path / "p"))}]))
    line = one_line_error(
        capsys, ["train", "--dataset", "braille", "--data-dir", str(evil), "--out", str(evil / "r")]
    )
    assert "refused to load" in line and not (tmp_path / "p").exists()
