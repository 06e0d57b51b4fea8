"""Hardware profiles: what a target chip can represent, as plain (frozen) data.

A :class:`HardwareProfile` lists the number formats (weight and state bits, how decays are
stored), the neuron and layer types, resets and size limits of a target. The built-in profiles
are summaries of the public documentation of each platform (simplified: no core/routing
limits) and can be replaced by a user-defined one:

>>> mine = HardwareProfile("mychip", weight_bits=4, state_bits=12, decay="shift", max_shift=7,
...                        resets=("zero",), max_hidden=512)
>>> get_profile(mine).weight_bits, get_profile("xylo").max_inputs
(4, 16)
>>> register_profile(mine); get_profile("mychip") is mine
True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ._decay import DECAY_MODES, ROUNDINGS

__all__ = [
    "HardwareProfile",
    "LOIHI2",
    "XYLO",
    "SPECK",
    "INT8",
    "PROFILES",
    "get_profile",
    "register_profile",
    "load_profile",
    "PROFILE_SUFFIXES",
    "FIRE_AT",
    "V_FLOORS",
]

_ALL_NEURONS = ("LIF", "IF", "CubaLIF", "LI", "RLIF")
_ALL_LAYERS = ("Linear", "Conv1d", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten")
_RESETS = ("zero", "subtract", "none")
#: When a neuron fires (:attr:`HardwareProfile.fire_at`).
FIRE_AT = (">", ">=")
#: The membrane's lower bound after a step (:attr:`HardwareProfile.v_floor`).
V_FLOORS = ("state", "-threshold")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class HardwareProfile:
    """Constraints of a target platform.

    Args:
        name: identifier used by :func:`get_profile` and ``export(target=...)``.
        weight_bits: signed weight width; weights lie in ``[-(2^(b-1)-1), 2^(b-1)-1]``.
        weight_exponent_range: shared per-layer exponent range (Loihi: mantissa·2^exp),
            informational; the quantiser uses exponent 0.
        state_bits: signed width of synaptic current and membrane (``None``: unbounded);
            states saturate at the range ends.
        decay: ``"shift"`` (``v -= v >> k``), ``"mult"`` (``v = v*(2^n-d) >> n``) or
            ``"none"`` (no leak: integrate-and-fire only).
        decay_bits: ``n`` of the ``"mult"`` decay (12 on Loihi 2).
        max_shift: largest ``k`` of the ``"shift"`` decay (15 on Xylo).
        decay_rounding: ``"floor"`` (arithmetic shift) or ``"trunc"`` (toward zero).
        resets: the resets the neurons implement.
        reset_delay: whether a one-step-delayed reset is available.
        neuron_types, layer_types: what can be mapped (kinds as :func:`kind_of` names them).
        shared_threshold: one threshold per layer (per-neuron thresholds are then folded into
            the weight rows: allowed, reported as a note).
        shared_decay: one decay per layer (per-neuron decays are a violation).
        max_inputs, max_hidden, max_outputs: input channels, hidden neurons (all neuron
            layers but the last), output neurons.
        max_fan_in, max_fan_out: non-zero synapses into / out of one neuron.
        max_layers: number of neuron layers.
        allow_bias: whether synapse biases exist on the target.
        fire_at: when a neuron fires: ``">"`` (:math:`V > \\theta`) or ``">="``
            (:math:`V \\ge \\theta`, Xylo).
        min_decay: every non-zero state decays by at least 1 (Xylo's ``"shift"`` decay).
        current_stage: every spiking neuron's input passes through a synaptic current before
            the membrane, decayed after the input is added (Xylo):
            :math:`I \\leftarrow \\mathrm{sat}(I + Z)`, :math:`I \\leftarrow I - d(I, k_i)`,
            :math:`V \\leftarrow \\mathrm{sat}(V - d(V, k_v) + I)`; ``LIF``/``RLIF`` use
            :math:`k_i` = ``synaptic_shift``, ``CubaLIF`` its own current decay.
        synaptic_shift: the current's shift :math:`k_i` of ``LIF``/``RLIF`` neurons under
            ``current_stage`` (1: an input's charge arrives as 1/2, 1/4, ... of itself).
        max_spikes: spikes a hidden neuron may fire in one step (it subtracts the threshold
            once per spike; > 1 needs the subtract reset).
        max_spikes_out: the same for the output (last) neuron layer.
        output_delay: the output neuron layer reads the previous step's input (Xylo's
            readout: output step :math:`t` sees the hidden spikes of step :math:`t-1`).
        input_clip: at most this many input events per channel and step (``None``: no limit).
        v_floor: the membrane's lower bound after each step: ``"state"`` (only the state
            range) or ``"-threshold"`` (:math:`U_t \\leftarrow \\max(U_t, -\\theta)`: DYNAP-CNN's
            ``threshold_low`` as sinabs sets it, ``min_v_mem = -spike_threshold``).
        description: one line shown in reports.

    The neuron-semantics fields (``fire_at`` to ``v_floor``) default to spikelfp's own
    integer neuron; :data:`XYLO` sets them to Xylo's, :data:`SPECK` to DYNAP-CNN's.
    """

    name: str
    weight_bits: int = 8
    weight_exponent_range: tuple[int, int] | None = None
    state_bits: int | None = 16
    decay: str = "mult"
    decay_bits: int = 12
    max_shift: int = 15
    decay_rounding: str = "floor"
    resets: tuple[str, ...] = _RESETS
    reset_delay: bool = True
    neuron_types: tuple[str, ...] = _ALL_NEURONS
    layer_types: tuple[str, ...] = _ALL_LAYERS
    shared_threshold: bool = False
    shared_decay: bool = False
    max_inputs: int | None = None
    max_hidden: int | None = None
    max_outputs: int | None = None
    max_fan_in: int | None = None
    max_fan_out: int | None = None
    max_layers: int | None = None
    allow_bias: bool = True
    fire_at: str = ">"
    min_decay: bool = False
    current_stage: bool = False
    synaptic_shift: int = 1
    max_spikes: int = 1
    max_spikes_out: int = 1
    output_delay: bool = False
    input_clip: int | None = None
    v_floor: str = "state"
    description: str = field(default="", compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a HardwareProfile needs a non-empty name")
        if int(self.weight_bits) < 2:
            raise ValueError(f"weight_bits must be >= 2, got {self.weight_bits}")
        if self.state_bits is not None and int(self.state_bits) < 2:
            raise ValueError(f"state_bits must be >= 2 or None, got {self.state_bits}")
        if self.decay not in DECAY_MODES:
            raise ValueError(f"decay must be one of {DECAY_MODES}, got {self.decay!r}")
        if self.decay_rounding not in ROUNDINGS:
            raise ValueError(
                f"decay_rounding must be one of {ROUNDINGS}, got {self.decay_rounding!r}"
            )
        bad = [r for r in self.resets if r not in _RESETS]
        if bad:
            raise ValueError(f"unknown resets {bad}; use a subset of {_RESETS}")
        bad = [n for n in self.neuron_types if n not in _ALL_NEURONS]
        if bad:
            raise ValueError(f"unknown neuron types {bad}; use a subset of {_ALL_NEURONS}")
        bad = [n for n in self.layer_types if n not in _ALL_LAYERS]
        if bad:
            raise ValueError(f"unknown layer types {bad}; use a subset of {_ALL_LAYERS}")
        if not 1 <= int(self.decay_bits) <= 30:
            raise ValueError(f"decay_bits must be in 1..30, got {self.decay_bits}")
        if not 0 <= int(self.max_shift) <= 62:
            raise ValueError(f"max_shift must be in 0..62, got {self.max_shift}")
        if self.fire_at not in FIRE_AT:
            raise ValueError(f"fire_at must be one of {FIRE_AT}, got {self.fire_at!r}")
        for name in ("min_decay", "current_stage", "output_delay"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.min_decay and self.decay != "shift":
            raise ValueError("min_decay needs decay='shift' (it is Xylo's bit-shift decay)")
        if not _is_int(self.synaptic_shift) or not 0 <= self.synaptic_shift <= self.max_shift:
            raise ValueError(
                f"synaptic_shift must be an integer in 0..max_shift ({self.max_shift}), got "
                f"{self.synaptic_shift!r}"
            )
        for name in ("max_spikes", "max_spikes_out"):
            n = getattr(self, name)
            if not _is_int(n) or n < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
            if n > 1 and "subtract" not in self.resets:
                raise ValueError(f"{name} > 1 needs the subtract reset in resets")
        if self.input_clip is not None and (not _is_int(self.input_clip) or self.input_clip < 1):
            raise ValueError(f"input_clip must be an integer >= 1 or None, got {self.input_clip!r}")
        if self.v_floor not in V_FLOORS:
            raise ValueError(f"v_floor must be one of {V_FLOORS}, got {self.v_floor!r}")
        if self.v_floor != "state" and "subtract" not in self.resets:
            raise ValueError("v_floor='-threshold' needs the subtract reset in resets")

    @property
    def chip_neuron(self) -> bool:
        """Whether the neuron-semantics fields differ from spikelfp's own integer neuron."""
        return (
            self.fire_at != ">"
            or self.min_decay
            or self.current_stage
            or self.max_spikes != 1
            or self.max_spikes_out != 1
            or self.output_delay
            or self.v_floor != "state"
        )

    @property
    def weight_max(self) -> int:
        """Largest weight magnitude: ``2^(weight_bits-1) - 1``."""
        return 2 ** (self.weight_bits - 1) - 1

    @property
    def state_range(self) -> tuple[int, int] | None:
        """``(min, max)`` of a state, or ``None`` when unbounded."""
        if self.state_bits is None:
            return None
        return -(2 ** (self.state_bits - 1)), 2 ** (self.state_bits - 1) - 1


#: Intel Loihi 2 (CUBA LIF neurons, 8-bit weights, 24-bit states, reset to zero).
LOIHI2 = HardwareProfile(
    "loihi2",
    weight_bits=8,
    weight_exponent_range=(-8, 7),
    state_bits=24,
    decay="mult",
    decay_bits=12,
    decay_rounding="trunc",
    resets=("zero",),
    reset_delay=False,
    neuron_types=("LIF", "IF", "CubaLIF", "LI", "RLIF"),
    layer_types=("Linear", "Conv2d", "AvgPool2d", "SumPool2d", "Flatten"),
    shared_threshold=True,
    shared_decay=True,
    description="Intel Loihi 2 (CUBA LIF): 8-bit weight mantissa + shared exponent, 24-bit "
    "states, 12-bit decays, one threshold/decay per layer, reset to zero",
)

#: SynSense Xylo (dense 8-bit weights, bit-shift decays, 16 inputs, 8 outputs), with Xylo's
#: own neuron (see :mod:`spikelfp.hw_export.vendor_xylo`): fires at :math:`V \ge \theta`,
#: every state decays by at least 1, inputs pass through a synaptic current, hidden neurons
#: fire up to 31 spikes per step, outputs read the previous step, inputs clipped to 15.
#: Xylo adds biases to the membrane, not to the current: no synapse bias.
XYLO = HardwareProfile(
    "xylo",
    weight_bits=8,
    state_bits=16,
    decay="shift",
    max_shift=15,
    decay_rounding="floor",
    resets=("subtract",),
    reset_delay=False,
    neuron_types=("LIF", "CubaLIF", "RLIF"),
    layer_types=("Linear",),
    max_inputs=16,
    max_hidden=1000,
    max_outputs=8,
    allow_bias=False,
    fire_at=">=",
    min_decay=True,
    current_stage=True,
    synaptic_shift=1,
    max_spikes=31,
    max_spikes_out=1,
    output_delay=True,
    input_clip=15,
    description="SynSense Xylo: dense 8-bit weights, 16-bit states, bit-shift decays (<= 15), "
    "<= 16 inputs, <= 1000 hidden, <= 8 spiking outputs, subtract reset, Xylo's neuron "
    "(synaptic current, up to 31 spikes per step, one-step readout delay)",
)

#: SynSense Speck / DYNAP-CNN (convolutional integrate-and-fire layers, sum pooling), with
#: the chip's neuron as sinabs (SynSense's SDK) simulates it: a neuron fires at
#: :math:`V \ge \theta`, as many spikes in a step as its membrane holds thresholds (the chip
#: handles events one by one, a time bin sees them all), subtracts :math:`\theta` per spike,
#: and its membrane never falls below :math:`-\theta` (``threshold_low``).
SPECK = HardwareProfile(
    "speck",
    weight_bits=8,
    state_bits=16,
    decay="none",
    resets=("subtract",),
    reset_delay=False,
    neuron_types=("IF",),
    layer_types=("Conv2d", "AvgPool2d", "SumPool2d", "Flatten"),
    shared_threshold=True,
    shared_decay=True,
    max_layers=9,
    max_inputs=2 * 128 * 128,
    fire_at=">=",
    max_spikes=2**15 - 1,
    max_spikes_out=2**15 - 1,
    v_floor="-threshold",
    description="SynSense Speck / DYNAP-CNN: convolutional integrate-and-fire layers (<= 9), "
    "8-bit weights, 16-bit states, one threshold per layer, sum pooling, DYNAP-CNN's neuron "
    "(fires at V >= threshold, several spikes per step, subtract reset, membrane >= -threshold)",
)

#: A generic 8-bit integer target (every layer and neuron type).
INT8 = HardwareProfile(
    "int8",
    weight_bits=8,
    state_bits=32,
    decay="mult",
    decay_bits=12,
    description="generic 8-bit integer target: 8-bit weights, 32-bit states, 12-bit decays, "
    "every layer and neuron type",
)

#: Registered profiles by name (add yours with :func:`register_profile`).
PROFILES: dict[str, HardwareProfile] = {p.name: p for p in (LOIHI2, XYLO, SPECK, INT8)}


def register_profile(profile: HardwareProfile) -> None:
    """Make ``profile`` available by name (``export(target=profile.name)``)."""
    if not isinstance(profile, HardwareProfile):
        raise TypeError(f"expected a HardwareProfile, got {type(profile).__name__}")
    PROFILES[profile.name.lower()] = profile


def get_profile(target: str | HardwareProfile) -> HardwareProfile:
    """A profile by name (``"loihi2"``, ``"xylo"``, ``"speck"``, ``"int8"``, or registered),
    or the given :class:`HardwareProfile` itself."""
    if isinstance(target, HardwareProfile):
        return target
    if not isinstance(target, str):
        raise TypeError(f"target must be a profile name or a HardwareProfile, got {target!r}")
    try:
        return PROFILES[target.lower()]
    except KeyError:
        raise ValueError(
            f"unknown hardware target {target!r}; known: {sorted(PROFILES)}, or pass a "
            "HardwareProfile(...) (register_profile() makes it available by name)"
        ) from None


#: File suffixes :func:`load_profile` reads.
PROFILE_SUFFIXES = (".json", ".toml", ".yaml", ".yml")

_TUPLE_FIELDS = ("weight_exponent_range", "resets", "neuron_types", "layer_types")


def load_profile(path: str | Path) -> HardwareProfile:
    """A :class:`HardwareProfile` from a JSON, TOML or YAML file of its fields.

    The file holds one mapping whose keys are :class:`HardwareProfile` fields (``name`` is
    required); lists become tuples. Unknown keys are refused with the list of known ones:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "mychip.json")
    >>> _ = open(path, "w").write('{"name": "mychip", "weight_bits": 6, "resets": ["zero"]}')
    >>> p = load_profile(path); p.weight_bits, p.resets
    (6, ('zero',))
    >>> _ = open(path, "w").write('{"name": "mychip", "weigth_bits": 6}')
    >>> load_profile(path)
    Traceback (most recent call last):
    ...
    ValueError: profile file ...mychip.json: unknown key(s) ['weigth_bits']; known: ...

    Args:
        path: a ``.json``, ``.toml``, ``.yaml`` or ``.yml`` file.

    Returns:
        the profile (not registered; pass it to :func:`register_profile` to use its name).
    """
    p = Path(path).expanduser()
    if p.suffix.lower() not in PROFILE_SUFFIXES:
        raise ValueError(
            f"profile file {p}: unknown format {p.suffix!r}; use one of "
            f"{', '.join(PROFILE_SUFFIXES)}"
        )
    try:
        text = p.read_text()
    except OSError as err:
        raise ValueError(f"profile file {p}: cannot read it ({err.strerror or err})") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        elif p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as err:  # noqa: BLE001 - every parser has its own error type
        raise ValueError(f"profile file {p}: not valid {p.suffix[1:]} ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"profile file {p}: expected a mapping of HardwareProfile fields")
    known = [f.name for f in dataclasses.fields(HardwareProfile)]
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise ValueError(f"profile file {p}: unknown key(s) {unknown}; known: {', '.join(known)}")
    if "name" not in data:
        raise ValueError(f"profile file {p}: the key 'name' is required")
    kwargs = {
        k: tuple(v) if k in _TUPLE_FIELDS and isinstance(v, list) else v for k, v in data.items()
    }
    try:
        return HardwareProfile(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"profile file {p}: {err}") from None
