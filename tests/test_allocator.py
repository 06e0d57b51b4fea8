"""spikelfp.reuse_freed_memory: a second large tensor reuses the first one's pages."""

import subprocess
import sys

import pytest

from spikelfp.allocator import _mallopt

CODE = """
import resource, sys, torch, spikelfp
if sys.argv[1] == "on":
    assert spikelfp.reuse_freed_memory()
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(25_000_000)  # 100 MB, freed again: a training step's large tensor
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del t
print(max(faults[-4:]))
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(_mallopt() is None, reason="needs glibc (Linux)")
def test_reuse_freed_memory_avoids_fresh_pages():
    fresh, reused = _faults("off"), _faults("on")
    # 100 MB in 4 KiB pages is ~24,000 first-touch faults; once glibc's heap holds freed
    # blocks of that size (after a few rounds) the tensor reuses them.
    assert fresh > 10_000, fresh
    assert reused < 1_000, reused


def test_reuse_freed_memory_can_be_switched_back():
    import spikelfp

    applied = spikelfp.reuse_freed_memory(True)
    assert spikelfp.reuse_freed_memory(False) == applied


def test_cli_train_and_demo_take_reuse_memory():
    from spikelfp.training.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--reuse-memory"]).reuse_memory
    assert not parser.parse_args(["train"]).reuse_memory
    assert parser.parse_args(["demo", "--reuse-memory"]).reuse_memory
