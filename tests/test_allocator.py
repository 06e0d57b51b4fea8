"""spikelfp.allocator: huge-page tensors, and the pool that reuses freed blocks."""

import gc
import subprocess
import sys

import pytest
import torch

from spikelfp._accel import allocator
from spikelfp.allocator import empty_large, empty_large_like, pooled_bytes, reuse_freed_memory

MB = 1 << 20


@pytest.fixture
def pool():
    """An empty pool with a known cap and a fresh high-water mark; the default afterwards."""
    reuse_freed_memory("off")
    reuse_freed_memory("all", max_bytes=64 * MB)
    yield
    reuse_freed_memory()


def test_small_and_non_cpu_requests_are_plain_tensors():
    t = empty_large((10, 10), dtype=torch.float64)
    assert t.shape == (10, 10) and t.dtype == torch.float64 and t.is_contiguous()
    meta = empty_large((4096, 4096), device="meta")
    assert meta.device.type == "meta"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8, torch.bool])
def test_large_tensors_have_the_requested_shape_and_dtype(dtype):
    t = empty_large((5, 1024, 1024), dtype=dtype)  # >= 4 MiB for every dtype
    assert t.shape == (5, 1024, 1024) and t.dtype == dtype and t.is_contiguous()
    assert t.data_ptr() % (2 * MB) == 0  # starts on a huge page
    t.fill_(1)
    assert bool(t.flatten()[-1])
    like = empty_large_like(t, (1024, 5120))
    assert like.shape == (1024, 5120) and like.dtype == dtype


def test_without_reuse_nothing_is_kept(pool):
    reuse_freed_memory("off")
    t = empty_large((8 * MB,), dtype=torch.uint8)
    del t
    gc.collect()
    assert pooled_bytes() == 0


def test_free_blocks_never_raise_the_high_water_mark_of_blocks_in_use(pool):
    reuse_freed_memory("peak", max_bytes=64 * MB)
    a = empty_large((8 * MB,), dtype=torch.uint8)
    del a  # kept: 8 MiB free, 0 in use, high-water 8 MiB
    assert pooled_bytes() == 8 * MB
    b = empty_large((10 * MB,), dtype=torch.uint8)  # new size: the free 8 MiB go back first
    assert pooled_bytes() == 0
    c = empty_large((8 * MB,), dtype=torch.uint8)  # in use 18 MiB now: the high-water mark
    del b, c
    assert pooled_bytes() == 18 * MB


def test_a_freed_block_serves_the_next_request_of_its_size(pool):
    t = empty_large((1024, 1024, 2))  # 8 MiB
    ptr = t.data_ptr()
    del t
    assert pooled_bytes() == 8 * MB
    again = empty_large((2048, 1024), dtype=torch.float32)
    assert again.data_ptr() == ptr and pooled_bytes() == 0
    other = empty_large((12 * MB,), dtype=torch.uint8)  # another size: a new block
    assert other.data_ptr() != ptr


def test_a_larger_free_block_serves_a_smaller_request(pool):
    big = empty_large((12 * MB,), dtype=torch.uint8)
    ptr = big.data_ptr()
    del big
    small = empty_large((6 * MB,), dtype=torch.uint8)
    assert small.data_ptr() == ptr and pooled_bytes() == 0
    del small
    assert pooled_bytes() == 12 * MB  # the whole block comes back


def test_a_block_is_not_reused_while_any_tensor_still_uses_it(pool):
    t = empty_large((8 * MB,), dtype=torch.uint8)
    view = t[MB:]  # e.g. a slice that autograd saved
    ptr = t.data_ptr()
    del t
    assert pooled_bytes() == 0
    other = empty_large((8 * MB,), dtype=torch.uint8)
    assert other.data_ptr() != ptr
    other.fill_(7)
    view.fill_(3)
    assert int(other[0]) == 7
    del view
    assert pooled_bytes() == 8 * MB


def test_autograd_saved_tensors_keep_their_block(pool):
    z = empty_large((2 * MB,)).normal_()  # 8 MiB of float32
    expected = z.clone()
    x = torch.ones(z.shape, requires_grad=True)
    y = x * z  # saves z for the backward
    ptr = z.data_ptr()
    del z
    fresh = empty_large((2 * MB,)).fill_(0.0)
    assert fresh.data_ptr() != ptr
    y.sum().backward()
    assert torch.equal(x.grad, expected)


def test_the_pool_keeps_at_most_its_limit_least_recently_freed_dropped_first(pool):
    reuse_freed_memory("all", max_bytes=20 * MB)
    a = empty_large((8 * MB,), dtype=torch.uint8)
    b = empty_large((10 * MB,), dtype=torch.uint8)
    c = empty_large((6 * MB,), dtype=torch.uint8)
    pb, pc = b.data_ptr(), c.data_ptr()
    del a, b, c  # 8 + 10 + 6 > 20: the 8 MiB block (freed first) is dropped
    assert pooled_bytes() == 16 * MB
    c2 = empty_large((6 * MB,), dtype=torch.uint8)
    assert c2.data_ptr() == pc and pooled_bytes() == 10 * MB
    a2 = empty_large((8 * MB,), dtype=torch.uint8)  # its block is gone: the 10 MiB one serves
    assert pooled_bytes() == 0 and a2.data_ptr() == pb


def test_switching_reuse_off_empties_the_pool_and_checks_its_argument(pool):
    t = empty_large((8 * MB,), dtype=torch.uint8)
    del t
    assert pooled_bytes() > 0
    assert reuse_freed_memory("off") is True
    assert pooled_bytes() == 0
    t = empty_large((8 * MB,), dtype=torch.uint8)
    del t
    assert pooled_bytes() == 0
    with pytest.raises(ValueError, match="max_bytes must be >= 0"):
        reuse_freed_memory(max_bytes=-1)
    with pytest.raises(ValueError, match=r"mode must be one of \('peak', 'all', 'off'\)"):
        reuse_freed_memory(True)


CODE = """
import resource, spikelfp
from spikelfp.allocator import empty_large
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = empty_large((25_000_000,)).fill_(1.0)  # 100 MB, freed again: a step's large tensor
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del t
print(max(faults[-3:]))
"""


def _faults(pool_bytes: str) -> int:
    env = {"SPIKELFP_POOL_BYTES": pool_bytes, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page faults: Linux")
def test_reuse_avoids_fresh_pages_and_huge_pages_need_fewer_faults():
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        thp = "[never]" not in f.read()
    fresh, reused = _faults("0"), _faults(str(1 << 30))
    # 100 MB in 4 KiB pages is ~24,000 first-touch faults, in 2 MiB pages ~50
    assert fresh < (2_000 if thp else 30_000), fresh
    if not thp:
        assert fresh > 10_000, fresh
    assert reused < 100, reused


def test_the_environment_variable_must_be_a_number(monkeypatch):
    monkeypatch.setenv("SPIKELFP_POOL_BYTES", "lots")
    with pytest.raises(ValueError, match="SPIKELFP_POOL_BYTES must be a number of bytes"):
        allocator._initial_limit()
    monkeypatch.setenv("SPIKELFP_POOL_BYTES", "1e9")
    assert allocator._initial_limit() == 10**9
    monkeypatch.delenv("SPIKELFP_POOL_BYTES")
    assert allocator._initial_limit() == allocator._default_limit() > 0


def test_all_keeps_blocks_beyond_the_high_water_mark(pool):
    a = empty_large((8 * MB,), dtype=torch.uint8)
    del a
    b = empty_large((10 * MB,), dtype=torch.uint8)  # "all": the free 8 MiB stay
    assert pooled_bytes() == 8 * MB
    del b
    assert pooled_bytes() == 18 * MB


def test_cli_train_and_demo_take_reuse_memory():
    from spikelfp.cli import UsageError, build_parser

    parser = build_parser()
    assert parser.parse_args(["train"]).reuse_memory == "peak"
    assert parser.parse_args(["train", "--reuse-memory", "all"]).reuse_memory == "all"
    assert parser.parse_args(["demo", "--reuse-memory", "off"]).reuse_memory == "off"
    with pytest.raises(UsageError, match="invalid choice: 'lots'"):
        parser.parse_args(["train", "--reuse-memory", "lots"])
