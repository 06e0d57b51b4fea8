"""How often the spike-count read-out ties: would a finer read-out change a run's accuracy?

The predicted class is the output neuron with the most spikes over the ``T`` steps (ties go
to the lowest index, :func:`spikelfp.training.predict`). For each trained run this script
evaluates the last checkpoint on one split and counts the recordings whose summed output has
no unique maximum, the errors among them, and the errors where the true class shares the
maximum (the most a tie-break could win back).

Usage::

    python benchmarks/output_ties.py runs/tune_a runs/tune_b --split tune

Use the ``tune`` split of tuning runs (``--tune-fraction``); the validation split is for
reporting, not for choosing a read-out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_json  # noqa: E402

from spikelfp.training import load_run  # noqa: E402
from spikelfp.training.data import collate, open_split  # noqa: E402
from spikelfp.training.evaluate import prepare_input  # noqa: E402


def output_counts(run: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed output spikes ``(N, C)`` of ``run``'s model on ``split``, and the labels."""
    model, cfg, _ = load_run(run)
    data = open_split(cfg, split)
    loader = DataLoader(data.dataset, batch_size=cfg.batch_size, collate_fn=collate)
    counts, labels = [], []
    with torch.no_grad():
        for batch in loader:
            out = model(prepare_input(batch[0], cfg.input_clamp))
            counts.append((out[0] if isinstance(out, tuple) else out).sum(0))
            labels.append(batch[1])
    return torch.cat(counts), torch.cat(labels)


def tie_stats(counts: torch.Tensor, labels: torch.Tensor) -> dict[str, float | int]:
    """Ties of the count read-out: ``counts`` ``(N, C)``, ``labels`` ``(N,)``.

    >>> c = torch.tensor([[3.0, 3.0, 0.0], [0.0, 1.0, 2.0], [2.0, 0.0, 0.0]])
    >>> s = tie_stats(c, torch.tensor([1, 2, 0]))
    >>> s["tied"], s["errors"], s["errors_tied_with_true"], round(s["accuracy"], 3)
    (1, 1, 1, 0.667)
    """
    top = counts.max(-1).values
    at_top = counts == top[:, None]
    tied = at_top.sum(-1) > 1
    wrong = counts.argmax(-1) != labels
    true_at_top = at_top.gather(1, labels[:, None]).squeeze(1)
    return {
        "n": int(labels.numel()),
        "accuracy": 1 - int(wrong.sum()) / labels.numel(),
        "tied": int(tied.sum()),
        "errors": int(wrong.sum()),
        "errors_tied_with_true": int((wrong & true_at_top).sum()),
        "mean_top_count": float(top.float().mean()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="trained run folders")
    ap.add_argument("--split", default="tune", choices=("train", "tune", "val", "test"))
    ap.add_argument("--name", default="output_ties.json", help="result file name")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    for run in args.runs:
        results.append(
            {"run": str(run), "split": args.split, **tie_stats(*output_counts(run, args.split))}
        )
    header = ["run", "accuracy %", "tied", "errors", "errors tied with the true class", "top count"]
    rows = [
        [
            Path(r["run"]).name,
            f"{100 * r['accuracy']:.1f}",
            r["tied"],
            r["errors"],
            r["errors_tied_with_true"],
            f"{r['mean_top_count']:.1f}",
        ]
        for r in results
    ]
    print(markdown_table(header, rows))
    path = write_json(args.name, {"results": results})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
