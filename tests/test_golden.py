"""spikelfp reproduces lfprop 1.0.0's golden LFP-for-LIF results (float64, 1e-9 relative)."""

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "golden_lfprop", Path(__file__).parents[1] / "benchmarks" / "golden_lfprop.py"
)
golden_lfprop = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(golden_lfprop)


def test_golden_cases(golden_path):
    results = golden_lfprop.compare(golden_path)
    assert set(results) == {"conv_T8", "mlp_T20", "mlp_T7_beta05"}
    for case, row in results.items():
        for tensor, err in row.items():
            if tensor.startswith("spikes"):
                assert err == 0, (case, tensor)
            else:
                assert err <= 1e-9, (case, tensor, err)


def test_golden_script_exit_code(golden_path, tmp_path):
    assert (
        golden_lfprop.main(["--golden", str(golden_path), "--json", str(tmp_path / "g.json")]) == 0
    )
    assert golden_lfprop.main(["--golden", str(tmp_path / "missing.npz")]) == 2


def test_golden_wrong_rule_is_caught(golden_path, monkeypatch):
    """The comparison is sharp: a slightly different ε breaks it."""
    from spikelfp.lfp import neuron_rules

    orig = neuron_rules.LIFRule.__init__
    monkeypatch.setattr(
        neuron_rules.LIFRule, "__init__", lambda self, epsilon=1e-6: orig(self, epsilon * 10)
    )
    results = golden_lfprop.compare(golden_path)
    assert (
        max(v for r in results.values() for k, v in r.items() if not k.startswith("spikes")) > 1e-9
    )
