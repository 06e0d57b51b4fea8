"""Event input kept sparse (spikelfp.events.SparseFrames) and the event-driven first Linear:
its forward, its LFP decomposition and the trainer's use of it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelfp import LIF, Sequential, SparseFrames
from spikelfp._accel.sparse import csr_transpose, csr_weight_sum
from spikelfp.lfp import (
    GammaRule,
    ZPlusRule,
    default_composite,
    feedback,
    lfp_step,
    online_lfp_step,
    rate_coded_reward,
)
from spikelfp.lfp.online import Windowed
from spikelfp.sequential import event_input_layer


def _frames(steps=9, batch=5, shape=(2, 4, 4), p=0.15, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, *shape, generator=g) < p).to(dtype)
    x[2, 1] *= 3  # a few counts above 1
    return x


def _mlp(dtype=torch.float64, bias=True, seed=0):
    torch.manual_seed(seed)
    return Sequential(
        nn.Flatten(),
        nn.Linear(32, 12, bias=bias),
        LIF(beta=0.9, threshold=0.4),
        nn.Linear(12, 4),
        LIF(beta=0.9, threshold=0.4),
    ).to(dtype)


def test_csr_rows_are_the_flattened_frames():
    x = _frames(dtype=torch.float32)
    sf = SparseFrames.from_dense(x)
    assert torch.equal(sf.csr().to_dense(), x.reshape(9 * 5, 32))
    assert torch.equal(sf.csr(3, 7).to_dense(), x[3:7].reshape(4 * 5, 32))
    assert torch.equal(sf.csr(6, 99).to_dense(), x[6:].reshape(3 * 5, 32))
    assert sf.csr(dtype=torch.float64).values().dtype == torch.float64
    window = sf.time_slice(2, 6)
    assert window.shape == (4, 5, 2, 4, 4) and torch.equal(window.dense(), x[2:6])
    empty = SparseFrames.from_dense(torch.zeros(3, 2, 5))
    assert empty.csr().to_dense().abs().sum() == 0 and empty.time_slice(1, 2).shape[0] == 1


@pytest.mark.parametrize("cols", [7, 40000])  # int16 and int32 sort keys
def test_csr_transpose_and_weight_sum(cols):
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(23, cols, dtype=torch.float64)
    where = torch.randint(0, 23 * cols, (60,), generator=g)
    x.view(-1)[where] = torch.rand(60, generator=g, dtype=torch.float64) + 0.5
    x[4] = 0  # an empty row
    m = x.to_sparse_csr()
    t = csr_transpose(m)
    assert t.shape == (cols, 23) and torch.equal(t.to_dense(), x.t())
    n = torch.randn(23, 6, generator=g, dtype=torch.float64)
    torch.testing.assert_close(csr_weight_sum(m, n), n.t() @ x, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="x has 23 rows but n has 5"):
        csr_weight_sum(m, n[:5])


def test_event_input_layer_finds_the_first_linear_after_flatten():
    assert event_input_layer(list(_mlp()), (2, 4, 4)) == 1
    assert event_input_layer(list(_mlp()), (3, 4, 4)) is None  # in_features differ
    assert event_input_layer([nn.Linear(32, 2)], (32,)) == 0
    assert event_input_layer([nn.Flatten(2), nn.Linear(32, 2)], (2, 16)) is None
    assert event_input_layer([nn.Conv2d(2, 3, 3), nn.Flatten()], (2, 4, 4)) is None


def test_sequential_on_events_equals_dense():
    net, x = _mlp(), _frames()
    sf = SparseFrames.from_dense(x)
    with torch.no_grad():
        out, state = net(x)
        out2, state2 = net(sf)
        torch.testing.assert_close(out2, out, rtol=0, atol=1e-12)
        assert state2[0] is None and state2[1] is None
        torch.testing.assert_close(state2[2].v, state[2].v, rtol=0, atol=1e-12)
        # from a state, in two halves
        a, s = net(sf.time_slice(0, 4))
        b, _ = net(sf.time_slice(4, 9), s)
        torch.testing.assert_close(torch.cat([a, b]), out, rtol=0, atol=1e-12)
        torch.testing.assert_close(Windowed(net, 4)(sf)[0], out, rtol=0, atol=1e-12)
    # a conv first layer takes the dense frames (the events converted once)
    torch.manual_seed(0)
    conv = Sequential(nn.Conv2d(2, 3, 3), LIF(threshold=0.2), nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        assert torch.equal(conv(sf.dense().float())[0], conv(SparseFrames.from_dense(x))[0])


@pytest.mark.parametrize("rule", [None, ZPlusRule(), GammaRule(gamma=0.3)])
@pytest.mark.parametrize("bias", [True, False])
def test_lfp_step_from_events_equals_dense(rule, bias):
    comp = (
        default_composite() if rule is None else default_composite().with_rules({nn.Linear: rule})
    )
    x, y = _frames(), torch.tensor([0, 1, 2, 3, 1])
    dense_net, event_net = _mlp(bias=bias), _mlp(bias=bias)
    a = lfp_step(dense_net, x, y, rate_coded_reward, composite=comp)
    b = lfp_step(event_net, SparseFrames.from_dense(x), y, rate_coded_reward, composite=comp)
    torch.testing.assert_close(b.output, a.output, rtol=0, atol=0)
    fa, fb = feedback(dense_net), feedback(event_net)
    assert sorted(fa) == sorted(fb) and "1.weight" in fb
    assert fa["1.weight"].abs().sum() > 0
    for k in fa:
        torch.testing.assert_close(fb[k], fa[k], rtol=1e-12, atol=1e-14)


def test_online_step_from_events_equals_dense_float64():
    x, y = _frames(steps=12), torch.tensor([0, 1, 2, 3, 1])
    a_net, b_net = _mlp(), _mlp()
    opt_a = torch.optim.SGD(a_net.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b_net.parameters(), lr=0.1)
    sf = SparseFrames.from_dense(x)
    a = online_lfp_step(a_net, x, y, rate_coded_reward, opt_a, window=5, update="window")
    b = online_lfp_step(b_net, sf, y, rate_coded_reward, opt_b, window=5, update="window")
    torch.testing.assert_close(b.output, a.output, rtol=0, atol=0)
    for pa, pb in zip(a_net.parameters(), b_net.parameters(), strict=True):
        torch.testing.assert_close(pb, pa, rtol=1e-12, atol=1e-14)


def test_lfp_step_event_input_errors():
    net, x = _mlp(), _frames()
    sf = SparseFrames.from_dense(x)
    with pytest.raises(ValueError, match=r"return_input_reward needs the dense input"):
        lfp_step(
            net, sf, torch.zeros(5, dtype=torch.long), rate_coded_reward, None, None, None, True
        )
    bad = SparseFrames(sf.shape, sf.index, sf.value.clone())
    bad.value[0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        lfp_step(net, bad, torch.zeros(5, dtype=torch.long), rate_coded_reward)
    lin = nn.Linear(7, 2)
    with pytest.raises(ValueError, match=r"Linear\(in_features=7\) got sparse input"):
        default_composite().rule_for(lin).forward(lin, sf.csr())


def test_a_model_that_is_not_sequential_gets_dense_frames():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x):
            assert isinstance(x, torch.Tensor)
            return self.net(x)

    x, y = _frames(), torch.tensor([0, 1, 2, 3, 1])
    res = lfp_step(Plain(), SparseFrames.from_dense(x), y, rate_coded_reward)
    assert res.output.shape == (9, 5, 4)


def test_trainer_feeds_events_to_a_first_linear(tmp_path):
    from spikelfp.training import TrainConfig, Trainer

    common = dict(dataset="digits-events", epochs=1, max_train_samples=64, batch_size=16)
    mlp = Trainer(TrainConfig(model="mlp", out=str(tmp_path / "mlp"), **common), log=lambda m: None)
    assert mlp.event_input
    x, _ = next(iter(mlp._loader(mlp.train_data.dataset, mlp.sampler, train=True)))
    assert isinstance(x, SparseFrames)
    conv = Trainer(
        TrainConfig(model="conv", out=str(tmp_path / "conv"), **common), log=lambda m: None
    )
    assert not conv.event_input
    bptt = Trainer(
        TrainConfig(model="mlp", method="bptt", out=str(tmp_path / "b"), **common),
        log=lambda m: None,
    )
    assert not bptt.event_input
    assert mlp.train_epoch(0)["n_train"] == 64
