r"""A quantised network in SynSense's own Xylo simulator (rockpool's ``XyloSim``).

:func:`rockpool_xylo_spec` turns a network quantised for ``target="xylo"`` (``Linear`` → hidden
``LIF``/``RLIF``/``CubaLIF`` → ``Linear`` → output ``LIF``/``CubaLIF``) into the keyword
arguments of rockpool's ``XyloSim.from_specification`` (and of ``config_from_specification``,
which builds the chip's configuration where SynSense's ``samna`` is installed);
:func:`rockpool_xylo_simulate` runs that bit-accurate simulator (the ``xylosim`` C++ package)
on an input raster. rockpool is AGPL-3.0 and xylosim builds a C++ extension: both are the
optional extra ``spikelfp[xylo]``, imported only here, only when called.

Xylo's neuron, per time step (hidden and output neurons alike; ``d(v, k) = v >> k``, or
``sign(v)`` when that is 0, so every non-zero state decays by at least 1)::

    I ← sat(I + Σ w·n_in)            inputs clipped to 15 events, hidden spikes to 31
    I ← I − d(I, dash_syn)            the current decays before it reaches the membrane
    V ← sat(V − d(V, dash_mem) + I + bias)
    n ← spikes while V ≥ θ (at most 31 per step, 1 for output neurons); V ← V − n·θ

Output neurons read the hidden spikes of the previous step; inputs are clipped to 15 events
per channel and step. This is the ``xylo`` profile's integer neuron
(:class:`~spikelfp.hw_export.HardwareProfile`'s neuron fields ``fire_at=">="``,
``min_decay``, ``current_stage`` with ``synaptic_shift=1``, ``max_spikes=31``,
``output_delay``, ``input_clip=15``), so :func:`~spikelfp.hw_export.simulate` of a network
quantised for ``"xylo"``, the torch :class:`~spikelfp.hw_export.QuantizedNeuron` (what
``train --target xylo`` trains on) and rockpool's ``XyloSim`` give the same spikes, step for
step (``tests/test_vendor_sdks.py``). States saturate at 16 bits after each step's sum
(:func:`~spikelfp.hw_export.simulate` counts the saturations); on networks built to saturate
hundreds of times per sample, XyloSim's spikes are still :func:`~spikelfp.hw_export.simulate`'s
(``test_saturating_states_agree_with_xylosim``).

spikelfp's own integer neuron (the other profiles') differs from Xylo's;
:func:`xylo_reference` is both neurons in one numpy loop, each difference a switch:

* spikelfp fires at :math:`V > \theta` and subtracts :math:`\theta`; Xylo fires at
  :math:`V \ge \theta_x` and subtracts :math:`\theta_x` (the switch-off side uses
  :math:`\theta = \theta_x - 1`: same first spike, one less subtracted per spike);
* spikelfp's shift decay :math:`v - \lfloor v / 2^k \rfloor` leaves positive states below
  :math:`2^k` unchanged; Xylo takes 1 from them;
* a spikelfp ``LIF``/``RLIF`` feeds its input straight to the membrane; Xylo always passes it
  through the synaptic current (``dash_syn = 1``: the input charge arrives as 1/2, 1/4, … of
  itself from the same step on); a ``CubaLIF``'s current decays before the input is added
  (spikelfp) or after (Xylo);
* Xylo's hidden neurons may fire several spikes in one step, spikelfp's one;
* Xylo's outputs read the previous step's hidden spikes;
* Xylo clips inputs to 15 events per channel and step.

Measured on the 7-letter Braille networks (``benchmarks/braille_xylo.py``), these differences
cost 25-40 points when a network trained on spikelfp's own neuron runs on Xylo; that is why the
``xylo`` profile now is Xylo's neuron, in export and in ``train --target xylo``.

>>> import torch
>>> from torch import nn
>>> from spikelfp import LIF, Sequential
>>> from spikelfp.hw_export import quantize
>>> torch.manual_seed(0) and None
>>> kw = dict(beta=0.9375, reset="subtract")
>>> net = Sequential(nn.Linear(4, 6, bias=False), LIF(**kw), nn.Linear(6, 2, bias=False),
...                  LIF(**kw))
>>> spec = rockpool_xylo_spec(quantize(net, 8, "xylo"))
>>> spec["weights_in"].shape, spec["weights_out"].shape, spec["dash_mem"].tolist()
((4, 6), (6, 2), [4, 4, 4, 4, 4, 4])
>>> spec["dash_syn"].tolist(), spec["bias"].tolist()
([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0])
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import numpy as np
import torch
from torch import nn

from ._decay import decay_numpy
from ._qneuron import QuantizedNeuron

__all__ = [
    "rockpool_xylo_spec",
    "rockpool_xylo_simulate",
    "load_xylo_sim",
    "xylo_reference",
    "XYLO_DIFFERENCES",
]

#: Where Xylo's neuron differs from spikelfp's integer neuron (see :func:`xylo_reference`).
XYLO_DIFFERENCES = (
    "fire_at_threshold",
    "min_decay",
    "synaptic_current",
    "multi_spike",
    "readout_delay",
    "input_clip",
)

#: Xylo (SYNS61201) limits the spec is checked against.
XYLO_MAX_INPUTS, XYLO_MAX_HIDDEN, XYLO_MAX_OUTPUTS = 16, 1000, 8
_HIDDEN_KINDS = ("LIF", "RLIF", "CubaLIF")
_OUTPUT_KINDS = ("LIF", "CubaLIF")
_INSTALL = "pip install 'spikelfp[xylo]' (rockpool, AGPL-3.0, and xylosim, a C++ extension)"


def load_xylo_sim():
    """rockpool's ``XyloSim`` class for Xylo Audio 2 (SYNS61201), imported on first use.

    rockpool 3.1.0's ``rockpool.devices.xylo`` package imports SynSense's ``samna`` (a binary
    that is not on PyPI) even when only the simulator is wanted; where that import fails, the
    simulator's own module is loaded without the package's ``__init__``.

    Returns:
        the ``rockpool.devices.xylo.syns61201.XyloSim`` class.

    Raises:
        ImportError: rockpool or xylosim is not installed (one line saying what to install).
    """
    missing = [m for m in ("rockpool", "xylosim") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"Xylo's simulator needs {' and '.join(missing)}: {_INSTALL}")
    name = "rockpool.devices.xylo"
    try:
        from rockpool.devices.xylo.syns61201.xylo_sim import XyloSim
    except ImportError:
        sys.modules.pop(name, None)
        spec = importlib.util.find_spec(name)
        stub = types.ModuleType(name)
        stub.__path__ = list(spec.submodule_search_locations or [])
        sys.modules[name] = stub
        try:
            XyloSim = importlib.import_module(name + ".syns61201.xylo_sim").XyloSim
        except ImportError as e:
            raise ImportError(f"rockpool's Xylo simulator does not import ({e}): {_INSTALL}") from e
        finally:
            if sys.modules.get(name) is stub:
                del sys.modules[name]
    return XyloSim


def _int(t, what: str) -> np.ndarray:
    a = t.detach().to(torch.float64).cpu().numpy() if isinstance(t, torch.Tensor) else t
    a = np.asarray(a, dtype=np.float64)
    if not np.array_equal(np.rint(a), a):
        raise ValueError(f"{what} holds non-integer values; pass the output of quantize()")
    return np.rint(a).astype(np.int64)


def _per_neuron(value, n: int, what: str) -> np.ndarray:
    return np.broadcast_to(_int(value, what), (n,)).copy()


def rockpool_xylo_spec(qnet) -> dict:
    r"""rockpool's Xylo specification of a network quantised for Xylo.

    The network (``qnet.model`` of :func:`~spikelfp.hw_export.quantize` with ``"xylo"``, or
    the model itself) must be ``Linear`` → hidden neuron → ``Linear`` → output neuron, with
    Xylo's neuron (the ``xylo`` profile's: bit-shift decays, subtract reset, fire at
    :math:`V \ge \theta`, minimum decay 1, synaptic current, up to 31 hidden spikes per step,
    one-step readout delay) and no biases. Weight matrices are transposed to rockpool's
    ``(pre, post)`` layout; the integer thresholds, decays and current shifts are Xylo's
    as they are, so ``XyloSim`` runs what :func:`~spikelfp.hw_export.simulate` runs.

    Args:
        qnet: a :class:`~spikelfp.hw_export.QuantizedNetwork` (or its ``model``).

    Returns:
        a dict of ``int64`` arrays for ``XyloSim.from_specification(**spec)``: ``weights_in``
        ``(N_in, N_hid)``, ``weights_rec`` ``(N_hid, N_hid)``, ``weights_out``
        ``(N_hid, N_out)``, ``dash_mem``, ``dash_syn``, ``threshold``, ``bias`` ``(N_hid,)``
        (zeros), ``dash_mem_out``, ``dash_syn_out``, ``threshold_out``, ``bias_out``
        ``(N_out,)`` (zeros).

    Raises:
        ValueError: the network is not that shape, is not integer, is not Xylo's neuron (not
            quantised for ``"xylo"``), has biases, or exceeds Xylo's 16 inputs, 1000 hidden or
            8 output neurons (the message says which).
    """
    model = getattr(qnet, "model", qnet)
    layers = list(model)
    kinds = [type(m).__name__ for m in layers]
    shape_ok = (
        len(layers) == 4
        and isinstance(layers[0], nn.Linear)
        and isinstance(layers[2], nn.Linear)
        and isinstance(layers[1], QuantizedNeuron)
        and isinstance(layers[3], QuantizedNeuron)
    )
    if not shape_ok:
        raise ValueError(
            f"Xylo's spec needs Linear, neuron, Linear, neuron from quantize(..., 'xylo'); got "
            f"{', '.join(kinds)}"
        )
    w_in, hid, w_out, out = layers
    if hid.kind not in _HIDDEN_KINDS or out.kind not in _OUTPUT_KINDS:
        raise ValueError(
            f"Xylo runs hidden {'/'.join(_HIDDEN_KINDS)} and output {'/'.join(_OUTPUT_KINDS)} "
            f"neurons; got hidden {hid.kind} and output {out.kind}"
        )
    for i, n, spikes, delay in ((1, hid, 31, False), (3, out, 1, True)):
        xylo = (
            n.decay_mode == "shift"
            and n.reset == "subtract"
            and not n.reset_delay
            and n.fire_at == ">="
            and n.min_decay
            and n.current_shift is not None
            and n.max_spikes == spikes
            and n.input_delay == delay
        )
        if not xylo:
            raise ValueError(
                f"layer {i} ({n.kind}) is not Xylo's neuron (decay {n.decay_mode!r}, reset "
                f"{n.reset!r}, fire_at {n.fire_at!r}, bit-shift current "
                f"{n.current_shift is not None}, {n.max_spikes} spike(s) per step): quantize "
                "with profile 'xylo' (bit-shift decays, subtract reset, Xylo's neuron)"
            )
    for i in (0, 2):
        lin = layers[i]
        if lin.bias is not None and bool(lin.bias.detach().ne(0).any()):
            raise ValueError(
                f"layer {i} has a bias; Xylo adds biases to the membrane, spikelfp's go "
                "through the synaptic current: train without bias for Xylo"
            )
    n_in, n_hid, n_out = w_in.in_features, w_in.out_features, w_out.out_features
    if w_out.in_features != n_hid:
        raise ValueError(f"layer 2 takes {w_out.in_features} inputs, layer 1 has {n_hid}")
    for what, n, cap in (
        ("inputs", n_in, XYLO_MAX_INPUTS),
        ("hidden neurons", n_hid, XYLO_MAX_HIDDEN),
        ("output neurons", n_out, XYLO_MAX_OUTPUTS),
    ):
        if n > cap:
            raise ValueError(f"the network has {n} {what}; Xylo has at most {cap}")

    def syn(n, size, what):
        k = n.i_decay if n.kind == "CubaLIF" else n.current_shift
        return _per_neuron(k, size, what)

    w_rec = hid.w_rec if hid.kind == "RLIF" else torch.zeros(n_hid, n_hid)
    return {
        "weights_in": _int(w_in.weight, "layer 0's weight").T.copy(),
        "weights_rec": _int(w_rec, "layer 1's recurrent weight").T.copy(),
        "weights_out": _int(w_out.weight, "layer 2's weight").T.copy(),
        "dash_mem": _per_neuron(hid.v_decay, n_hid, "layer 1's decay"),
        "dash_syn": syn(hid, n_hid, "layer 1's current decay"),
        "threshold": _per_neuron(hid.threshold, n_hid, "layer 1's threshold"),
        "bias": np.zeros(n_hid, np.int64),
        "dash_mem_out": _per_neuron(out.v_decay, n_out, "layer 3's decay"),
        "dash_syn_out": syn(out, n_out, "layer 3's current decay"),
        "threshold_out": _per_neuron(out.threshold, n_out, "layer 3's threshold"),
        "bias_out": np.zeros(n_out, np.int64),
    }


def _raster(spec: dict, x) -> np.ndarray:
    """``x`` as an int64 ``(T, B, N_in)`` raster of non-negative event counts."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    x = np.asarray(x)
    n_in = np.shape(spec["weights_in"])[0]
    if x.ndim != 3 or x.shape[2] != n_in:
        raise ValueError(f"Xylo's input must be (T, B, {n_in}) events, got shape {x.shape}")
    if not np.isfinite(x).all() or (x < 0).any() or not np.array_equal(np.rint(x), x):
        raise ValueError("Xylo's input must be non-negative integer event counts")
    return np.rint(x).astype(np.int64)


def rockpool_xylo_simulate(spec: dict, x) -> np.ndarray:
    """Run rockpool's bit-accurate Xylo simulator (``XyloSim``) on an input raster.

    Each sample starts from rest. Output step ``t`` is Xylo's step ``t`` (its outputs read the
    hidden spikes of step ``t - 1``), as in :func:`~spikelfp.hw_export.simulate` of the network
    quantised for ``"xylo"``.

    Args:
        spec: :func:`rockpool_xylo_spec`'s dict.
        x: input events ``(T, B, N_in)`` (tensor or array of non-negative integers; Xylo
            takes at most 15 per channel and step and clips the rest).

    Returns:
        output spikes ``(T, B, N_out)``, ``int64``.

    Raises:
        ImportError: rockpool or xylosim is missing (``pip install 'spikelfp[xylo]'``).
        ValueError: ``x`` is not a ``(T, B, N_in)`` raster of non-negative integers.
    """
    XyloSim = load_xylo_sim()
    x = _raster(spec, x)
    mod = XyloSim.from_specification(**spec)
    t, b, _ = x.shape
    out = np.zeros((t, b, spec["weights_out"].shape[1]), np.int64)
    for i in range(b):
        mod.reset_state()
        y, _, _ = mod.evolve(x[:, i])
        out[:, i] = np.asarray(y, dtype=np.int64)
    return out


def xylo_reference(spec: dict, x, *, xylo: tuple[str, ...] = XYLO_DIFFERENCES):
    """Xylo's neuron in numpy (no rockpool needed), each difference from spikelfp's a switch.

    With every name of :data:`XYLO_DIFFERENCES` in ``xylo`` (the default) this is the network
    rockpool's ``XyloSim`` runs, and :func:`~spikelfp.hw_export.simulate` of the network
    quantised for ``"xylo"``, spike for spike (states saturate after each step's sum, as in
    XyloSim on every network tested, saturating ones included); with ``xylo=()`` it is
    spikelfp's own integer neuron (the other profiles') on the same integers, with thresholds
    :math:`\\theta = \\theta_x - 1` (a ``CubaLIF``'s current, :math:`I \\leftarrow D(I) + z`,
    is not modelled on that side). The switches (Xylo's side when named):

    * ``fire_at_threshold``: fire at :math:`V \\ge \\theta_x` and subtract :math:`\\theta_x`
      (else spikelfp's :math:`V > \\theta`, subtract :math:`\\theta`, with
      :math:`\\theta = \\theta_x - 1`);
    * ``min_decay``: every non-zero state decays by at least 1;
    * ``synaptic_current``: the input goes through the current ``I`` (``I += z``, then
      ``I -= d(I, dash_syn)``) before the membrane (else straight to the membrane);
    * ``multi_spike``: hidden neurons fire up to 31 spikes per step (subtracting the threshold
      each time) instead of 1;
    * ``readout_delay``: output neurons read the previous step's hidden spikes;
    * ``input_clip``: at most 15 input events per channel and step.

    Args:
        spec: :func:`rockpool_xylo_spec`'s dict.
        x: input events ``(T, B, N_in)``, non-negative integers.
        xylo: the differences taken on Xylo's side.

    Returns:
        ``(hidden, output)`` spike counts, ``(T, B, N_hid)`` and ``(T, B, N_out)``, int64, in
        Xylo's step numbering (with ``readout_delay`` the output lags one step).

    Raises:
        ValueError: an unknown name in ``xylo``, or a bad ``x``.
    """
    unknown = sorted(set(xylo) - set(XYLO_DIFFERENCES))
    if unknown:
        raise ValueError(f"unknown Xylo differences {unknown}; use names of {XYLO_DIFFERENCES}")
    x = _raster(spec, x)
    on = set(xylo)
    lo, hi = -(2**15), 2**15 - 1
    w_in, w_rec, w_out = (
        np.asarray(spec[k], np.int64) for k in ("weights_in", "weights_rec", "weights_out")
    )
    t, b, _ = x.shape
    n_hid, n_out = w_out.shape

    def population(n, sfx, max_spikes):
        return {
            "I": np.zeros((b, n), np.int64),
            "V": np.zeros((b, n), np.int64),
            "dsyn": np.asarray(spec["dash_syn" + sfx], np.int64),
            "dmem": np.asarray(spec["dash_mem" + sfx], np.int64),
            "bias": np.asarray(spec["bias" + sfx], np.int64),
            "th": np.asarray(spec["threshold" + sfx], np.int64),
            "max": max_spikes if "multi_spike" in on else 1,
        }

    def step(p, z):
        if "synaptic_current" in on:
            i = np.clip(p["I"] + z, lo, hi)
            p["I"] = decay_numpy(i, "shift", p["dsyn"], 0, "floor", "min_decay" in on)
            z = p["I"]
        v = decay_numpy(p["V"], "shift", p["dmem"], 0, "floor", "min_decay" in on) + z + p["bias"]
        v = np.clip(v, lo, hi)
        # spikes while V >= θx (Xylo) or V > θ = θx - 1 (spikelfp), subtracting each time
        if "fire_at_threshold" in on:
            th = np.maximum(p["th"], 1)
            n = np.floor_divide(v, th)
        else:
            th = np.maximum(p["th"] - 1, 1)
            n = np.floor_divide(v - 1, th)
        n = np.clip(n, 0, p["max"])
        p["V"] = v - n * th
        return n

    hid_p, out_p = population(n_hid, "", 31), population(n_out, "_out", 1)
    hidden = np.zeros((t, b, n_hid), np.int64)
    output = np.zeros((t, b, n_out), np.int64)
    s_prev = np.zeros((b, n_hid), np.int64)
    for k in range(t):
        xk = np.minimum(x[k], 15) if "input_clip" in on else x[k]
        s = step(hid_p, xk @ w_in + s_prev @ w_rec)
        output[k] = step(out_p, (s_prev if "readout_delay" in on else s) @ w_out)
        hidden[k] = s_prev = s
    return hidden, output
