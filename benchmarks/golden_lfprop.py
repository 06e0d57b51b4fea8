"""Reproduce lfprop 1.0.0's golden LFP-for-LIF results with spikelfp's own modules.

Usage::

    python benchmarks/golden_lfprop.py --golden ../shared/lfp_golden/lfprop-1.0.0-lif-golden.npz

Prints the max relative error per case and tensor and exits non-zero if any exceeds the
tolerance (1e-9) or any spike differs. The networks are lfprop's snntorch ``Leaky`` networks
expressed in spikelfp: ``LIF(reset="subtract", reset_delay=True, threshold=1)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.lfp import lfp_step

TOLERANCE = 1e-9


def _lif(beta: float) -> LIF:
    return LIF(beta=beta, threshold=1.0, reset="subtract", reset_delay=True)


def build_case(data, case: str) -> tuple[Sequential, dict[str, str]]:
    """The spikelfp network of a golden case and the map golden-name -> parameter name.

    Built in float64 from the start: ``.double()`` afterwards would keep β rounded to float32.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _build_case(data, case)
    finally:
        torch.set_default_dtype(previous)


def _build_case(data, case: str) -> tuple[Sequential, dict[str, str]]:
    beta = float(data[f"{case}/beta"])
    w = {
        k.split("/param/")[1]: torch.from_numpy(data[k])
        for k in data.files
        if k.startswith(f"{case}/param/")
    }
    if case.startswith("mlp"):
        layers, names = [], {}
        for i in sorted({int(k.split(".")[0]) for k in w}):
            wt = w[f"{i}.weight"]
            layers += [nn.Linear(wt.shape[1], wt.shape[0]), _lif(beta)]
            names[f"{i}.weight"] = f"{2 * i}.weight"
            names[f"{i}.bias"] = f"{2 * i}.bias"
        net = Sequential(*layers)
    else:
        c = w["0.weight"]
        lin = w["3.weight"]
        net = Sequential(
            nn.Conv2d(c.shape[1], c.shape[0], c.shape[2], padding=c.shape[2] // 2),
            _lif(beta),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(lin.shape[1], lin.shape[0]),
            _lif(beta),
        )
        names = {
            "0.weight": "0.weight",
            "0.bias": "0.bias",
            "3.weight": "4.weight",
            "3.bias": "4.bias",
        }
    params = dict(net.named_parameters())
    with torch.no_grad():
        for gname, pname in names.items():
            params[pname].copy_(w[gname])
    return net, names


def rel_err(a: torch.Tensor, b: np.ndarray) -> float:
    b = torch.from_numpy(np.asarray(b))
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def compare(golden: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Max relative error per case and tensor (``spikes`` counts differing spikes)."""
    data = np.load(golden)
    cases = sorted({k.split("/")[0] for k in data.files})
    results: dict[str, dict[str, float]] = {}
    for case in cases:
        net, names = build_case(data, case)
        x = torch.from_numpy(data[f"{case}/x"])
        reward = torch.from_numpy(data[f"{case}/reward"])
        res = lfp_step(net, x, None, reward, return_input_reward=True)
        params = dict(net.named_parameters())
        row = {
            "spikes (differing)": float(
                (res.output != torch.from_numpy(data[f"{case}/spikes"])).sum()
            )
        }
        for gname, pname in names.items():
            row[f"F({gname})"] = rel_err(-params[pname].grad, data[f"{case}/feedback/{gname}"])
        row["input_reward"] = rel_err(res.input_reward, data[f"{case}/input_reward"])
        results[case] = row
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("SPIKELFP_GOLDEN")
    ap.add_argument(
        "--golden",
        default=default,
        required=default is None,
        help="path to lfprop-1.0.0-lif-golden.npz (default: $SPIKELFP_GOLDEN)",
    )
    ap.add_argument("--json", default="benchmarks/results/golden_lfprop.json")
    args = ap.parse_args(argv)
    if not Path(args.golden).is_file():
        print(f"golden file not found: {args.golden}", file=sys.stderr)
        return 2
    results = compare(args.golden)
    worst = 0.0
    print("| case | tensor | max relative error |\n|---|---|---|")
    failed = False
    for case, row in results.items():
        for tensor, err in row.items():
            print(f"| {case} | {tensor} | {err:.3e} |")
            if tensor.startswith("spikes"):
                failed |= err != 0
            else:
                worst = max(worst, err)
                failed |= not err <= TOLERANCE
    print(
        f"\nworst relative error {worst:.3e} (tolerance {TOLERANCE:g}): "
        f"{'FAIL' if failed else 'OK'}"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps({"tolerance": TOLERANCE, "worst": worst, "cases": results}, indent=2)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
