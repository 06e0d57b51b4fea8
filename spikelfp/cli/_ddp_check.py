"""Self-check of a data-parallel launch setup, without any data::

    torchrun --standalone --nproc-per-node 2 -m spikelfp.cli._ddp_check --steps 5

Two (or more) processes train a tiny network through DistributedDataParallel and check that all
copies of the weights stay equal (:func:`spikelfp.training.distributed.selfcheck`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags and run the self-check; returns its exit code (0: copies equal)."""
    from ..training.distributed import selfcheck

    ap = argparse.ArgumentParser(
        prog="python -m spikelfp.cli._ddp_check",
        description="Train a tiny network data-parallel and check that all copies stay equal.",
    )
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16, help="global batch")
    ap.add_argument(
        "--simulate-failure",
        type=int,
        default=None,
        metavar="RANK",
        help="this rank exits abruptly after the first step (tests teardown)",
    )
    ap.add_argument("--timeout", type=float, default=None, help="collective timeout (s)")
    args = ap.parse_args(argv)
    return selfcheck(args.steps, args.batch_size, args.simulate_failure, args.timeout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
