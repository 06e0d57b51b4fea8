"""Run a per-step snntorch or norse network over a time-first tensor, as one module."""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

__all__ = ["StepLoop"]


def _is_snntorch(net: nn.Module) -> bool:
    if importlib.util.find_spec("snntorch") is None:
        return False
    import snntorch

    return any(isinstance(m, snntorch.SpikingNeuron) for m in net.modules())


class StepLoop(nn.Module):
    """``StepLoop(net)(x)`` runs ``net`` once per time step of ``x: (T, B, ...)``.

    * an snntorch network with ``init_hidden=True`` neurons (the ``nn.Sequential`` idiom):
      hidden states are reset first, then ``y_t = net(x[t])``; returns ``(out, mem)`` with
      ``mem`` the stacked last output when the network returns ``(spk, mem)``, else ``None``;
    * a norse per-step network (``out, state = net(x[t], state)``): returns
      ``(out, final_state)``.

    This makes such networks usable wherever spikelfp expects ``model(x) -> (out, ...)``,
    e.g. ``lfp_step(StepLoop(net), x, y, reward, opt, composite=snntorch_composite())``.
    The wrapped network is ``self.net`` (its parameters are this module's parameters).
    """

    def __init__(self, net: nn.Module, style: str = "auto"):
        super().__init__()
        if style not in ("auto", "snntorch", "norse"):
            raise ValueError(f"style must be 'auto', 'snntorch' or 'norse', got {style!r}")
        self.net = net
        self.style = ("snntorch" if _is_snntorch(net) else "norse") if style == "auto" else style

    def forward(self, x: torch.Tensor):
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError("StepLoop expects a time-first tensor (T, B, ...)")
        if self.style == "snntorch":
            from .snntorch import snntorch_forward

            return snntorch_forward(self.net, x)
        from .norse import norse_forward

        return norse_forward(self.net, x)

    def extra_repr(self) -> str:
        return f"style={self.style!r}"
