r"""What ``tau``, ``r`` and ``dt`` mean in a NIR file, producer by producer.

NIR's neurons are written in continuous time (:math:`\tau \dot v = (v_{leak} - v) + r I`),
but every producer writes the parameters of *its own* discrete-time model, and they differ.
Read from each exporter's source (the versions in ``docs/interop.md``), a convention turns a
node's parameters into spikelfp's per-step decays and the per-step **input gain** :math:`g`
(the factor the input is multiplied by before it reaches the state; folded into the synapse
in front):

=============  ==========================================  =====================  ==========
convention     decay per step                              input gain :math:`g`   reset
=============  ==========================================  =====================  ==========
``nir``        :math:`1 - dt/\tau` (forward Euler, ``dt``)  :math:`dt\,r/\tau`;    to zero
                                                           IF/I: :math:`dt\,r`
``spikelfp``   as ``nir``, ``dt`` from the file             as ``nir``; IF/I: r    from file
``snntorch``   :math:`1 - dt/\tau`, :math:`dt = \tau/r`     1                      subtract,
               (snntorch writes :math:`\tau = 10^{-4}/(1-\beta)`,                 delayed
               :math:`r = \tau/10^{-4}`)
``sinabs``     :math:`e^{-1/\tau}` (:math:`\tau` in steps)   1 (IF: r)              subtract
``norse``      :math:`1 - a`, :math:`a = dt^2/\tau`         :math:`a\,r\,w_{in}`   to zero
               (norse writes :math:`\tau = dt/\tau^{-1}_{mem}`, dt = 1e-3)         (IF: r)
``rockpool``   :math:`e^{-u}`, :math:`u = dt/\tau = W(1/r)`  LIF: 1; CubaLIF:       subtract
               (rockpool writes :math:`r = \tau e^{-u}/dt`)  :math:`e^{-dt/\tau_{syn}}`
=============  ==========================================  =====================  ==========

:func:`detect_convention` recognises them from the parameters (``r = \tau/dt`` with one
``dt`` for every neuron: snntorch; :math:`r\,u = e^{-u}` with one ``dt``: rockpool; ``r = 1``
with :math:`\tau \ge 1`: sinabs; ``r = 1`` with :math:`\tau < 10^{-2}`: norse; a graph with
only IF/I neurons: sinabs, whose IF gain is ``r`` per step) and from spikelfp's metadata.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["Convention", "CONVENTIONS", "convention", "detect_convention", "PLAUSIBLE_GAIN"]

#: per-step input gains outside this range are almost always a wrong convention or dt
PLAUSIBLE_GAIN = (1e-2, 1e2)


@dataclasses.dataclass(frozen=True)
class Convention:
    """How one producer's NIR parameters map to per-step decays and input gains.

    Attributes:
        name: the producer (``"nir"``, ``"spikelfp"``, ``"snntorch"``, ``"sinabs"``,
            ``"norse"``, ``"rockpool"``).
        decay: ``"euler"`` (:math:`1 - dt/\\tau`), ``"exp_steps"`` (:math:`e^{-1/\\tau}`),
            ``"norse"`` (:math:`1 - dt^2/\\tau`) or ``"exp"`` (:math:`e^{-dt/\\tau}`).
        reset, reset_delay: the reset the producer simulates (spikelfp's names).
        dt: the producer's time step in seconds, when it fixes one (``None``: from the file
            or the caller).
        if_gain_per_step: IF/I nodes' ``r`` is the per-step gain (else :math:`dt\\,r`).
        note: one line for the user (shown in docs and warnings).
        multi_spike: IF/LIF neurons emit ``trunc(V/theta)`` spikes per step (sinabs's
            default ``MultiSpike``, rockpool) and reset by subtracting them all.
    """

    name: str
    decay: str
    reset: str
    reset_delay: bool
    dt: float | None
    if_gain_per_step: bool
    note: str
    multi_spike: bool = False

    def decay_of(self, tau, dt: float) -> np.ndarray:
        """Per-step decay of a state with time constant ``tau`` (an array).

        Args:
            tau: the node's time constant(s).
            dt: the time step (ignored by ``"exp_steps"``).

        Returns:
            float64 array of decays (not clipped; the caller checks :math:`[0, 1]`).
        """
        tau = np.asarray(tau, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.decay == "euler":
                return 1.0 - dt / tau
            if self.decay == "exp_steps":
                return np.exp(-1.0 / tau)
            if self.decay == "norse":
                return 1.0 - dt * dt / tau
            return np.exp(-dt / tau)

    def lif_gain(self, tau, r, dt: float) -> np.ndarray:
        """Per-step input gain of an LIF/LI node (see the module table)."""
        tau = np.asarray(tau, dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        if self.decay == "euler":
            return dt * r / tau
        if self.decay == "norse":
            return dt * dt / tau * r
        return np.ones(np.broadcast(tau, r).shape)

    def cuba_gain(self, tau_syn, tau_mem, r, w_in, dt: float) -> np.ndarray:
        """Per-step input gain of a CubaLIF node (see the module table)."""
        ts, tm = np.asarray(tau_syn, np.float64), np.asarray(tau_mem, np.float64)
        r, w_in = np.asarray(r, np.float64), np.asarray(w_in, np.float64)
        if self.decay == "euler":
            return (dt * w_in / ts) * (dt * r / tm)
        if self.decay == "norse":
            return dt * dt / tm * r * w_in
        if self.decay == "exp":
            return np.exp(-dt / ts) * np.ones_like(tm)
        return np.ones(np.broadcast(ts, tm).shape)

    def if_gain(self, r, dt: float | None) -> np.ndarray:
        """Per-step input gain of an IF/I node: ``r`` or :math:`dt\\,r`."""
        r = np.asarray(r, dtype=np.float64)
        return r if self.if_gain_per_step or dt is None else dt * r


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention(
            "nir", "euler", "zero", False, None, False,
            "NIR's own semantics: forward Euler with an explicit dt, reset to v_reset",
        ),
        Convention(
            "spikelfp", "euler", "zero", False, None, True,
            "spikelfp's exporter: dt and each neuron's reset are in the file",
        ),
        Convention(
            "snntorch", "euler", "subtract", True, None, True,
            "snntorch writes tau = 1e-4/(1-beta), r = tau/1e-4 (unit gain); its Leaky, "
            "Synaptic and RLeaky reset by subtraction one step late by default",
        ),
        Convention(
            "sinabs", "exp_steps", "subtract", False, None, True,
            "sinabs writes tau in time steps (decay exp(-1/tau)), r = 1 (gain 1 per step); "
            "IAF/LIF emit trunc(V/theta) spikes per step (MultiSpike, sinabs's default) and "
            "reset by subtraction", True,
        ),
        Convention(
            "sinabs-single", "exp_steps", "subtract", False, None, True,
            "as 'sinabs', for models built with spike_fn=SingleSpike (one spike per step)",
        ),
        Convention(
            "norse", "norse", "zero", False, 1e-3, True,
            "norse writes tau = dt/tau_mem_inv with dt = 1e-3 and r = 1; its cells integrate "
            "dt*tau_mem_inv times their input and reset to v_reset",
        ),
        Convention(
            "rockpool", "exp", "subtract", False, None, True,
            "rockpool writes r = tau*exp(-dt/tau)/dt; decays exp(-dt/tau); LIFTorch scales "
            "its input by the synaptic decay, emits floor(V/theta) spikes per step and resets "
            "by subtraction", True,
        ),
    )
}  # fmt: skip


def convention(name: str) -> Convention:
    """The :class:`Convention` called ``name``; a ``ValueError`` lists the known ones."""
    try:
        return CONVENTIONS[str(name)]
    except KeyError:
        raise ValueError(
            f"unknown NIR convention {name!r}; use one of {sorted(CONVENTIONS)}"
        ) from None


def _same(values: list[np.ndarray], rtol: float = 1e-4) -> float | None:
    """The common value of all arrays (within ``rtol``), or None."""
    flat = np.concatenate([np.ravel(v) for v in values]) if values else np.array([])
    if flat.size == 0 or not np.all(np.isfinite(flat)) or np.any(flat <= 0):
        return None
    ref = float(np.median(flat))
    if np.all(np.abs(flat - ref) <= rtol * abs(ref)):
        return ref
    return None


def _lambert_w0(y: np.ndarray) -> np.ndarray:
    """Principal branch of Lambert's W for y >= 0 (Newton; no scipy needed)."""
    y = np.asarray(y, dtype=np.float64)
    w = np.log1p(y)
    for _ in range(60):
        ew = np.exp(w)
        w = w - (w * ew - y) / (ew * (w + 1.0))
    return w


def detect_convention(nir, nodes: dict, meta: dict) -> tuple[Convention, float | None, str]:
    """Guess the producer of a (flattened) NIR graph.

    Args:
        nir: the ``nir`` module.
        nodes: ``name -> node`` of every node (sub-graphs already flattened).
        meta: the graph's metadata.

    Returns:
        ``(convention, dt, reason)``: ``dt`` is the producer's time step where it can be
        read or implied (``None`` if none is needed or known); ``reason`` says why.
    """
    if str(meta.get("producer", "")) == "spikelfp":
        return CONVENTIONS["spikelfp"], float(meta["dt"]), "written by spikelfp (metadata)"
    if "dt" in meta:
        return CONVENTIONS["nir"], float(meta["dt"]), f"the graph records dt = {meta['dt']}"
    dts_unit, dts_rock, taus, rs = [], [], [], []
    for node in nodes.values():
        if isinstance(node, (nir.LIF, nir.LI)):
            tau, r = np.asarray(node.tau, np.float64), np.asarray(node.r, np.float64)
            taus.append(tau)
            rs.append(r)
            with np.errstate(divide="ignore", invalid="ignore"):
                dts_unit.append(tau / r)
                dts_rock.append(tau * _lambert_w0(1.0 / r))
        elif isinstance(node, nir.CubaLIF):
            tm, r = np.asarray(node.tau_mem, np.float64), np.asarray(node.r, np.float64)
            ts, w_in = np.asarray(node.tau_syn, np.float64), np.asarray(node.w_in, np.float64)
            taus += [tm, ts]
            rs += [r, w_in]
            with np.errstate(divide="ignore", invalid="ignore"):
                dts_unit += [tm / r, ts / w_in]
                dts_rock.append(tm * _lambert_w0(1.0 / r))
    if not taus:
        return (
            CONVENTIONS["sinabs"],
            None,
            "only IF/I neurons (no time constants): r is the per-step gain, as sinabs, norse "
            "and snntorch read it; subtractive reset as sinabs (pass convention='norse' for "
            "norse's reset to zero)",
        )
    all_r_one = all(np.allclose(r, 1.0, rtol=0, atol=1e-12) for r in rs)
    if all_r_one:
        tmax = max(float(np.max(t)) for t in taus)
        tmin = min(float(np.min(t)) for t in taus)
        if tmin >= 1.0:
            return CONVENTIONS["sinabs"], None, "r = 1 and tau >= 1 (sinabs: tau in time steps)"
        if tmax < 1e-2:
            return (
                CONVENTIONS["norse"],
                1e-3,
                "r = 1 and tau < 1e-2 (norse writes tau = dt/tau_mem_inv; its dt = 1e-3)",
            )
    # with one time constant per layer both patterns fit; snntorch's dt is always 1e-4
    dt_unit, dt_rock = _same(dts_unit), _same(dts_rock)
    if dt_unit is not None and not all_r_one and abs(dt_unit - 1e-4) < 1e-9:
        return CONVENTIONS["snntorch"], dt_unit, "r = tau/dt with dt = 1e-4 (snntorch)"
    if dt_rock is not None and not all_r_one:
        return (
            CONVENTIONS["rockpool"],
            dt_rock,
            f"r = tau exp(-dt/tau)/dt with one dt = {dt_rock:.6g} (rockpool)",
        )
    if dt_unit is not None and not all_r_one:
        return (
            CONVENTIONS["snntorch"],
            dt_unit,
            f"r = tau/dt with one dt = {dt_unit:.6g} (unit input gain, as snntorch)",
        )
    return (
        None,
        None,
        "the parameters match no known producer (r = 1 with tau between 1e-2 and 1, or "
        "r/tau not from one dt)",
    )


def check_gain(gain: np.ndarray, name: str, conv: Convention, dt) -> str | None:
    """A warning text when a neuron's per-step input gain is implausible, else None."""
    g = np.abs(np.asarray(gain, dtype=np.float64))
    g = g[g > 0]
    if g.size == 0:
        return None
    lo, hi = float(g.min()), float(g.max())
    if lo >= PLAUSIBLE_GAIN[0] and hi <= PLAUSIBLE_GAIN[1]:
        return None
    dt_txt = "" if dt is None else f", dt = {dt:g}"
    return (
        f"node {name!r}: per-step input gain {lo:.3g}..{hi:.3g} under convention "
        f"{conv.name!r}{dt_txt} is implausible (a graph trained elsewhere normally has a gain "
        f"near 1); if the network is silent or saturated, pass convention= "
        f"({', '.join(sorted(CONVENTIONS))}) or the producer's dt"
    )


def finite_positive(x) -> bool:
    """True for a finite number > 0."""
    try:
        return math.isfinite(float(x)) and float(x) > 0
    except (TypeError, ValueError):
        return False
