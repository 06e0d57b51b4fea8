"""Online (windowed) LFP: K = T is lfp_step bit for bit; windows carry state; sparse frames."""

import numpy as np
import pytest
import torch
from torch import nn

from spikelfp import LI, LIF, Sequential
from spikelfp.lfp import (
    PerStepSoftmaxReward,
    RunningRateReward,
    SparseFrames,
    feedback,
    lfp_step,
    online_lfp_step,
    per_step_softmax_reward,
    rate_coded_reward,
)
from spikelfp.lfp.step import _detach
from spikelfp.training import calibrate_firing_online

T, B, F, C = 12, 5, 16, 4


def _mlp(seed=0, delayed=False):
    torch.manual_seed(seed)
    kw = {"reset": "subtract", "reset_delay": True} if delayed else {}
    return Sequential(
        nn.Linear(F, 20), LIF(beta=0.9, threshold=0.3, **kw), nn.Linear(20, C),
        LIF(beta=0.8, threshold=0.2, **kw),
    )  # fmt: skip


def _conv(seed=0):
    torch.manual_seed(seed)
    return Sequential(
        nn.Conv2d(2, 4, 3, padding=1), LIF(beta=0.9, threshold=0.2), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(4 * 3 * 3, C), LIF(beta=0.9, threshold=0.1),
    )  # fmt: skip


def _data(shape=(F,), seed=1, p=0.3):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, *shape, generator=g) < p).float()
    y = torch.randint(0, C, (B,), generator=g)
    return x, y


def _same_params(a, b):
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("window", [T, T + 7])
@pytest.mark.parametrize("update", ["sequence", "window"])
@pytest.mark.parametrize("make", ["mlp", "mlp-delayed", "conv"])
def test_window_of_T_is_lfp_step_bit_for_bit(window, update, make):
    build = {
        "mlp": _mlp,
        "mlp-delayed": lambda: _mlp(delayed=True),
        "conv": _conv,
    }[make]
    x, y = _data((2, 6, 6)) if make == "conv" else _data()
    full, online = build(), build()
    opt_a = torch.optim.Adam(full.parameters(), lr=1e-2)
    opt_b = torch.optim.Adam(online.parameters(), lr=1e-2)
    a = lfp_step(full, x, y, rate_coded_reward, opt_a)
    b = online_lfp_step(online, x, y, rate_coded_reward, opt_b, window=window, update=update)
    assert torch.equal(a.output, b.output) and torch.equal(a.reward, b.reward)
    fa, fb = feedback(full), feedback(online)
    assert fa.keys() == fb.keys() and len(fa) == 4
    for k in fa:
        assert torch.equal(fa[k], fb[k]), k
    assert any(float(v.abs().sum()) > 0 for v in fa.values())
    _same_params(full, online)
    for sa, sb in zip(a.state, b.state, strict=True):
        assert (sa is None and sb is None) or torch.equal(sa.v, sb.v)


def test_windows_carry_state_forward_exactly():
    """The windows' outputs are the whole sequence's (state carried, weights unchanged)."""
    net = _mlp(delayed=True)
    x, y = _data()
    with torch.no_grad():
        expected, _ = net(x)
    res = online_lfp_step(net, x, y, rate_coded_reward, window=5, update="sequence")
    assert torch.allclose(res.output, expected, atol=0)
    assert res.output.shape == (T, B, C) and float(res.output.sum()) > 0


def test_sequence_update_is_sum_of_windows_with_detached_state():
    """Definition: F = Σ_k F_k, window k decomposed from the detached state of window k-1."""
    x, y = _data()
    net, ref = _mlp(), _mlp()
    online_lfp_step(net, x, y, rate_coded_reward, window=5)
    total, state = {}, None
    for start in range(0, T, 5):
        r = lfp_step(ref, x[start : start + 5], y, rate_coded_reward, state=state)
        state = _detach(r.state)
        for k, v in feedback(ref).items():
            total[k] = total.get(k, 0) + v
    got = feedback(net)
    for k in total:
        torch.testing.assert_close(got[k], total[k], rtol=1e-6, atol=1e-7)
    # truncation is real: the feedback differs from full LFP's
    full = _mlp()
    lfp_step(full, x, y, rate_coded_reward)
    assert not torch.allclose(feedback(full)["0.weight"], got["0.weight"])


def test_window_update_steps_after_every_window():
    x, y = _data()
    net, ref = _mlp(), _mlp()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.05)
    online_lfp_step(net, x, y, rate_coded_reward, opt, window=4, update="window")
    state = None
    for start in range(0, T, 4):
        state = lfp_step(ref, x[start : start + 4], y, rate_coded_reward, opt_ref, state=state)
        state = state.state
    _same_params(net, ref)
    assert not torch.equal(net[0].weight, _mlp()[0].weight)


@pytest.mark.parametrize("window", [1, 4, 5, T])
def test_causal_rewards_are_the_same_by_windows(window):
    torch.manual_seed(3)
    out = (torch.rand(T, B, C) < 0.4).float()
    y = torch.randint(0, C, (B,))
    for rew, whole in [
        (RunningRateReward(scale=0.5), None),
        (PerStepSoftmaxReward(), per_step_softmax_reward(out, y)),
    ]:
        parts, carry = [], None
        for s in range(0, T, window):
            r, carry = rew.window(out[s : s + window], y, s, T, carry)
            parts.append(r)
        full = rew(out, y)
        torch.testing.assert_close(torch.cat(parts), full, rtol=1e-6, atol=1e-7)
        if whole is not None:
            assert torch.equal(full, whole)
    # the running rate reward at step t from the counts up to t (by hand)
    count = out.cumsum(0)
    onehot = nn.functional.one_hot(y, C).float()
    tt = torch.arange(1, T + 1).float().view(-1, 1, 1)
    expect = onehot * (1 - torch.sigmoid(count - T // 2)) - (1 - onehot) * out * (
        1 - torch.sigmoid(tt - count - T // 2)
    )
    torch.testing.assert_close(RunningRateReward()(out, y), expect)


def test_causal_reward_in_online_step_matches_lfp_step_for_one_window():
    x, y = _data()
    net, ref = _mlp(), _mlp()
    a = online_lfp_step(net, x, y, RunningRateReward(1 / T), window=T)
    b = lfp_step(ref, x, y, RunningRateReward(1 / T))
    assert torch.equal(a.reward, b.reward)
    res = online_lfp_step(_mlp(), x, y, RunningRateReward(1 / T), window=3)
    torch.testing.assert_close(res.reward, RunningRateReward(1 / T)(res.output, y))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_bad_window_is_one_line_error(bad):
    x, y = _data()
    with pytest.raises(ValueError, match="positive whole number of time steps") as info:
        online_lfp_step(_mlp(), x, y, rate_coded_reward, window=bad)
    assert "\n" not in str(info.value)


def test_models_that_cannot_stream():
    x, y = _data()
    bn = Sequential(nn.Linear(F, C), nn.BatchNorm1d(C), LIF(threshold=0.1))
    with pytest.raises(ValueError, match=r"layer 1 \(BatchNorm1d\) cannot run in windows"):
        online_lfp_step(bn, x, y, rate_coded_reward, window=4)
    bn.eval()  # running statistics: streams
    online_lfp_step(bn, x, y, rate_coded_reward, window=4)

    class NoState(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x, state=None):
            return self.net(x, state)[0]

    with pytest.raises(ValueError, match="returns no state, so it cannot run in windows"):
        online_lfp_step(NoState(), x, y, rate_coded_reward, window=4)
    online_lfp_step(NoState(), x, y, rate_coded_reward, window=T)  # one window: fine
    with pytest.raises(ValueError, match="update must be one of"):
        online_lfp_step(_mlp(), x, y, rate_coded_reward, window=4, update="step")
    with pytest.raises(ValueError, match="pass an optimizer"):
        online_lfp_step(_mlp(), x, y, rate_coded_reward, window=4, update="window")


def test_li_readout_streams():
    torch.manual_seed(0)
    net = Sequential(nn.Linear(F, 8), LIF(beta=0.9, threshold=0.3), nn.Linear(8, C), LI(0.9))
    x, y = _data()
    with torch.no_grad():
        expected, _ = net(x)
    res = online_lfp_step(net, x, y, PerStepSoftmaxReward(), window=5)
    torch.testing.assert_close(res.output, expected, rtol=0, atol=1e-6)


# -- sparse frames -------------------------------------------------------------------------------
def test_sparse_frames_round_trip_and_windows():
    x, _ = _data((2, 3, 3), p=0.1)
    x[2, 1, 0, 0, 0] = 3.0
    sf = SparseFrames.from_dense(x)
    assert sf.shape == tuple(x.shape) and sf.index.numel() == int((x != 0).sum())
    assert bool((sf.index[1:] > sf.index[:-1]).all())
    assert torch.equal(sf.dense(), x)
    assert torch.equal(sf.window(2, 7), x[2:7])
    assert torch.equal(sf.window(10, 99), x[10:])
    assert torch.equal(sf.window(0, T, clamp=1.0), x.clamp(max=1))


def test_sparse_frames_from_samples_pads_like_collate():
    from spikelfp.datasets import pad_collate

    g = torch.Generator().manual_seed(0)
    samples = [(torch.rand(n, 2, 3, 3, generator=g) < 0.2).float() * 2 for n in (5, 3, 7)]
    dense, _, _ = pad_collate([(s, 0) for s in samples])
    parts = []
    for s in samples:
        flat = s.reshape(-1).numpy()
        where = np.flatnonzero(flat)
        parts.append((tuple(s.shape), where.astype(np.int32), flat[where].astype(np.uint8)))
    sf = SparseFrames.from_samples(parts)
    assert torch.equal(sf.dense(), dense)
    with pytest.raises(ValueError, match="same frame shape"):
        SparseFrames.from_samples([parts[0], ((5, 2, 4, 3), parts[1][1], parts[1][2])])


def _events(ts, xs, ys, ps):
    ev = np.zeros(len(ts), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i2")])
    ev["t"], ev["x"], ev["y"], ev["p"] = ts, xs, ys, ps
    return ev


def test_sparse_frames_from_events_bins_and_refuses_decreasing_time():
    rng = np.random.default_rng(0)
    evs = []
    for n in (40, 25):
        t = np.sort(rng.integers(0, 12_000, n))
        evs.append(_events(t, rng.integers(0, 4, n), rng.integers(0, 3, n), rng.integers(0, 2, n)))
    sf = SparseFrames.from_events(evs, (4, 3, 2), bin_us=1000, steps=T)
    expect = torch.zeros(T, 2, 2, 3, 4)
    for b, ev in enumerate(evs):
        for e in ev:
            expect[e["t"] // 1000, b, e["p"], e["y"], e["x"]] += 1
    assert torch.equal(sf.dense(), expect) and float(expect.sum()) == 65
    bad = _events([0, 500, 400, 900], [0, 1, 1, 0], [0] * 4, [0] * 4)
    with pytest.raises(ValueError, match=r"sample 1: event timestamps decrease at event 2"):
        SparseFrames.from_events([evs[0], bad], (4, 3, 2), bin_us=1000, steps=T)
    with pytest.raises(ValueError, match="outside the sensor"):
        SparseFrames.from_events([_events([0], [9], [0], [0])], (4, 3, 2), 1000, T)
    with pytest.raises(ValueError, match="must be positive"):
        SparseFrames.from_events(evs, (4, 3, 2), bin_us=0, steps=T)


def test_online_step_on_sparse_frames_equals_dense():
    x, y = _data(p=0.1)
    a_net, b_net = _mlp(), _mlp()
    a = online_lfp_step(a_net, x, y, rate_coded_reward, window=5)
    b = online_lfp_step(b_net, SparseFrames.from_dense(x), y, rate_coded_reward, window=5)
    assert torch.equal(a.output, b.output)
    # the first Linear's sums come from the events (another summation order): float32 rounding
    for k, v in feedback(a_net).items():
        torch.testing.assert_close(feedback(b_net)[k], v, rtol=1e-5, atol=1e-6)


def test_calibrate_firing_online_matches_calibrate_firing():
    from spikelfp.training import calibrate_firing

    x, _ = _data(p=0.2)
    a, b = _mlp(), _mlp()
    ga = calibrate_firing(a, x, [0.2, 0.1])
    gb = calibrate_firing_online(b, SparseFrames.from_dense(x), [0.2, 0.1], window=5)
    assert ga == pytest.approx(gb, rel=1e-3)
    with torch.no_grad():
        rate = b[:2](x)[0].mean().item()
    assert 0.12 < rate < 0.28
    with pytest.raises(ValueError, match="need 2 target rates"):
        calibrate_firing_online(b, x, [0.1], window=5)


def test_calibrate_firing_online_conv_and_dense_input():
    from spikelfp.training import calibrate_firing

    x, _ = _data((2, 6, 6), p=0.2)
    a, b = _conv(), _conv()
    ga = calibrate_firing(a, x, [0.2, 0.1])
    gb = calibrate_firing_online(b, x, [0.2, 0.1], window=4)
    assert ga == pytest.approx(gb, rel=1e-3)
    torch.testing.assert_close(a[0].weight, b[0].weight, rtol=1e-3, atol=0)


def test_windowed_inference_on_events_uses_the_sparse_first_layer():
    from spikelfp.lfp import Windowed

    torch.manual_seed(0)
    net = Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 8), LIF(beta=0.9, threshold=0.2),
                     nn.Linear(8, C), LIF(beta=0.9, threshold=0.1))  # fmt: skip
    x, _ = _data((2, 3, 3), p=0.2)
    with torch.no_grad():
        expected, state = net(x)
        got, got_state = Windowed(net, 5)(SparseFrames.from_dense(x))
    assert torch.equal(got, expected) and float(got.sum()) > 0
    assert got_state[:2] == (None, None) and torch.allclose(got_state[4].v, state[4].v)


def test_ready_reward_tensor_is_cut_into_windows():
    x, y = _data()
    net, ref = _mlp(), _mlp()
    r = torch.randn(T, B, C, generator=torch.Generator().manual_seed(2))
    res = online_lfp_step(net, x, y, r, window=5)
    assert torch.equal(res.reward, r)
    total, state = {}, None
    for start in range(0, T, 5):
        step = lfp_step(ref, x[start : start + 5], y, r[start : start + 5], state=state)
        state = step.state
        for k, v in feedback(ref).items():
            total[k] = total.get(k, 0) + v
    for k, v in feedback(net).items():
        torch.testing.assert_close(v, total[k], rtol=1e-6, atol=1e-7)
