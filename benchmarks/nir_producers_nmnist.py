"""Graphs trained elsewhere, imported by spikelfp with no dt or convention, on real N-MNIST.

Each producer (sinabs: an IF CNN on raw event counts, its default MultiSpike IAF; snntorch: a
Leaky MLP) trains its own network with its own surrogate-gradient BPTT on the training
recordings, exports it to a .nir file with its own exporter, and simulates the validation
recordings itself. spikelfp then reads the file with ``from_nir(path)`` (nothing else) and
evaluates it on the same frames through the same code as ``spikelfp eval GRAPH.nir``. Reported:
both accuracies, the share of validation recordings whose output spike counts are identical,
and what the old import (``dt=1e-3``, NIR's own semantics) gives the sinabs graph.

Frames: spikelfp's own pipeline (``--dataset nmnist --time-bins 30 --bin-ms 10
--input-clamp none --val-fraction 0.2``): 800 training / 200 validation recordings.

    python benchmarks/nir_producers_nmnist.py            # writes results/nir_producers_nmnist.json
    python benchmarks/nir_producers_nmnist.py --graphs /tmp/g   # keep the .nir files
    python benchmarks/nir_producers_nmnist.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from spikelfp.hw_export import from_nir, read_nir, write_nir  # noqa: E402
from spikelfp.training.config import TrainConfig  # noqa: E402
from spikelfp.training.data import open_split  # noqa: E402
from spikelfp.training.nir_eval import evaluate_nir, load_nir_model  # noqa: E402

RESULTS = ROOT / "results"


def frames(cfg, split):
    data = open_split(cfg, split)
    xs, ys = [], []
    for i in range(len(data.dataset)):
        x, y = data.dataset[i][:2]
        xs.append(x.to(torch.uint8))
        ys.append(int(y))
    return torch.stack(xs, 1), torch.tensor(ys)  # (T, N, 2, 34, 34), (N,)


def batches(x, y, bs, shuffle, seed):
    idx = (
        torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        if shuffle
        else (torch.arange(len(y)))
    )
    for i in range(0, len(y), bs):
        j = idx[i : i + bs]
        yield x[:, j].float(), y[j]


# ------------------------------------------------------------------------------- sinabs


def sinabs_net(batch):
    import sinabs.layers as sl

    return nn.Sequential(
        nn.Conv2d(2, 8, 3, stride=2, padding=1, bias=False),
        sl.IAFSqueeze(batch_size=batch),
        sl.SumPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False),
        sl.IAFSqueeze(batch_size=batch),
        sl.SumPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10, bias=False),
        sl.IAFSqueeze(batch_size=batch),
    )


def sinabs_run(net, x):
    """x (T, B, ...) -> output spikes (T, B, 10); sinabs's squeezed (B*T) layout."""
    import sinabs

    t, b = x.shape[:2]
    for m in net:
        if isinstance(m, sinabs.layers.StatefulLayer):
            m.reset_states()
            m.batch_size = b
    out = net(x.transpose(0, 1).reshape(b * t, *x.shape[2:]))
    return out.reshape(b, t, -1).transpose(0, 1)


# ------------------------------------------------------------------------------- snntorch


def snntorch_net():
    import snntorch as snn

    return nn.Sequential(
        nn.Linear(2 * 34 * 34, 128),
        snn.Leaky(beta=torch.full((128,), 0.9), threshold=torch.full((128,), 1.0),
                  init_hidden=True),
        nn.Linear(128, 10),
        snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.full((10,), 1.0),
                  init_hidden=True, output=True),
    )  # fmt: skip


def snntorch_run(net, x):
    import snntorch.utils

    snntorch.utils.reset(net)
    x = x.reshape(*x.shape[:2], -1)
    return torch.stack([net(x[t])[0] for t in range(x.shape[0])])


# ------------------------------------------------------------------------------- common


def train(net, run, x, y, epochs, lr, bs, seed):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for ep in range(epochs):
        t0, n_ok, n = time.time(), 0, 0
        for xb, yb in batches(x, y, bs, True, seed + ep):
            out = run(net, xb)
            loss = nn.functional.cross_entropy(out.sum(0), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n_ok += int((out.sum(0).argmax(1) == yb).sum())
            n += len(yb)
        print(f"  epoch {ep + 1}: train acc {n_ok / n:.3f} ({time.time() - t0:.0f} s)")


@torch.no_grad()
def predict_all(run, net, x, y, bs=50):
    counts = []
    for xb, _ in batches(x, y, bs, False, 0):
        counts.append(run(net, xb).sum(0))
    return torch.cat(counts)


@torch.no_grad()
def spikelfp_counts(model, x, y, bs=50):
    counts = []
    for xb, _ in batches(x, y, bs, False, 0):
        out, _ = model(xb)
        counts.append(out.sum(0))
    return torch.cat(counts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "nir_producers_nmnist.json"))
    ap.add_argument(
        "--graphs",
        default=None,
        metavar="DIR",
        help="keep the producers' .nir files here (for `spikelfp eval`); default: a temp folder",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data_root = Path(os.environ.get("SPIKELFP_DATA", ROOT.parent.parent / "shared" / "data"))
    cfg = TrainConfig(
        dataset="nmnist",
        data_dir=str(data_root / "nmnist"),
        time_bins=30,
        bin_ms=10.0,
        input_clamp=None,
        val_fraction=0.2,
        max_train_samples=100 if args.quick else None,
        max_eval_samples=50 if args.quick else None,
    )
    epochs = 1 if args.quick else args.epochs
    xtr, ytr = frames(cfg, "train")
    xva, yva = frames(cfg, "val")
    print(f"N-MNIST frames: train {tuple(xtr.shape)}, val {tuple(xva.shape)}")
    RESULTS.mkdir(exist_ok=True)
    tmp = tempfile.TemporaryDirectory()
    graphs = Path(args.graphs or tmp.name)
    graphs.mkdir(parents=True, exist_ok=True)
    rows = []
    producers = {
        "sinabs": (lambda: sinabs_net(32), sinabs_run, 1e-3),
        "snntorch": (snntorch_net, snntorch_run, 5e-4),
    }
    for name, (make, run, lr) in producers.items():
        torch.manual_seed(args.seed)
        net = make()
        print(f"{name}: training {epochs} epochs with its own BPTT")
        train(net, run, xtr, ytr, epochs, lr, 32, args.seed)
        net.eval()
        ref = predict_all(run, net, xva, yva)
        acc_ref = float((ref.argmax(1) == yva).float().mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "sinabs":
                sinabs_run(net, torch.zeros(1, 1, 2, 34, 34))  # batch size 1, states reset
                graph = __import__("sinabs").to_nir(net, torch.zeros(1, 2, 34, 34))
                graph.infer_types()
            else:
                from snntorch.export_nir import export_to_nir

                graph = export_to_nir(net, torch.zeros(1, 2 * 34 * 34), ignore_dims=[0])
        path = graphs / f"{name}_nmnist.nir"
        try:
            write_nir(graph, path)
            graph = read_nir(path)
            where = f"{name}_nmnist.nir (file)"
        except Exception as err:  # noqa: BLE001 - the producer's graph may not serialise
            print(f"  {name}'s graph cannot be written by nir ({err}); imported in memory")
            path, where = None, "in memory"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = (
                load_nir_model(path, (2, 34, 34))[0]
                if path
                else from_nir(graph)  # no dt, no convention
            )
        if path is not None:
            res = evaluate_nir(path, cfg.replace(batch_size=50), "val")
            acc_lfp = res["accuracy"]
        else:
            acc_lfp = None
        got = spikelfp_counts(model, xva, yva)
        if acc_lfp is None:
            acc_lfp = float((got.argmax(1) == yva).float().mean())
        same = float((got == ref.to(got.dtype)).all(1).float().mean())
        row = {
            "producer": name,
            "graph": where,
            "producer_val_accuracy": acc_ref,
            "spikelfp_val_accuracy": acc_lfp,
            "identical_output_counts": same,
            "import_warnings": [str(w.message) for w in caught],
        }
        if name == "sinabs":  # the old default: NIR semantics with dt = 1e-3
            with warnings.catch_warnings(record=True) as old:
                warnings.simplefilter("always")
                wrong = from_nir(graph, dt=1e-3)
            m = wrong if path is None else load_nir_model(path, (2, 34, 34), dt=1e-3)[0]
            c = spikelfp_counts(m, xva, yva)
            row["with_dt_1e-3_accuracy"] = float((c.argmax(1) == yva).float().mean())
            row["with_dt_1e-3_warning"] = str(old[0].message) if old else None
        rows.append(row)
    print()
    print("| producer | graph | producer's own val. acc. | spikelfp from_nir(path) val. acc. "
          "| identical output counts | dt=1e-3 (old default) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        old = r.get("with_dt_1e-3_accuracy")
        print(
            f"| {r['producer']} | {r['graph']} | {100 * r['producer_val_accuracy']:.1f} % | "
            f"{100 * r['spikelfp_val_accuracy']:.1f} % | "
            f"{100 * r['identical_output_counts']:.1f} % | "
            f"{'-' if old is None else f'{100 * old:.1f} % (warned)'} |"
        )
    out = {
        "command": "python benchmarks/nir_producers_nmnist.py" + (" --quick" if args.quick else ""),
        "epochs": epochs,
        "seed": args.seed,
        "frames": "nmnist, time_bins 30, bin_ms 10, input_clamp none, val_fraction 0.2",
        "n_train": int(len(ytr)),
        "n_val": int(len(yva)),
        "versions": {m: __import__(m).__version__ for m in ("sinabs", "snntorch", "nir")},
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
