"""The built documentation site (``make docs``, which ``make test`` runs before pytest).

Building the site inside pytest would take about half a minute on two busy cores, so these
tests read ``docs/_build/html`` and skip, saying so, when it has not been built.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
API = SITE / "api" / "generated"

pytestmark = pytest.mark.skipif(
    not (SITE / "index.html").is_file(),
    reason="docs/_build/html is absent: run `make docs` (make test does) to build the site",
)


def _check_site():
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lfp_step_page_holds_its_signature():
    cs = _check_site()
    page = cs.text_of(API / "spikelfp.lfp.lfp_step.html")
    assert page, "no API page for spikelfp.lfp.lfp_step"
    assert cs.signature_names(page, "spikelfp.lfp.lfp_step") == [
        "model",
        "x",
        "target",
        "reward",
        "optimizer",
        "composite",
        "state",
        "return_input_reward",
    ]
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "param.grad = -F" in text  # the docstring, rendered
    assert 'class="doctest' in page  # its example


def test_neuron_page_holds_its_equations_as_maths():
    cs = _check_site()
    page = cs.text_of(API / "spikelfp.neurons.LIF.html")
    assert page, "no API page for spikelfp.neurons.LIF"
    displayed = [m for m in cs.math_of(page) if m.startswith("\\[")]
    assert any("V_t" in m and "\\beta" in m and "H(V_t - \\theta)" in m for m in displayed)
    inline = [m for m in cs.math_of(page) if m.startswith("\\(")]
    assert "\\(\\theta\\)" in inline  # the :math: roles of the Args section
    assert "mathjax" in page.lower()


def test_whole_site_check_passes():
    assert _check_site().check(SITE) == []
