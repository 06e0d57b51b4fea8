"""Recipes: the default training settings of each dataset, as data (one YAML file each).

A recipe is what ``spikelfp train --dataset X`` uses when no flag or ``--config`` file says
otherwise. Each file ``<dataset>.yaml`` beside this module holds

* ``settings``: :class:`~spikelfp.training.TrainConfig` fields for the dataset (its default
  model among them);
* ``models``: per-model overrides (``{model name: {field: value}}``), each of which may hold a
  ``methods`` section of its own;
* ``methods``: per-method overrides (e.g. ``bptt``: the surrogate-gradient baseline's own
  recipe).

Precedence, lowest first: the dataclass defaults < ``settings`` < ``models[model]`` <
``methods[method]`` < ``models[model].methods[method]`` < ``--config FILE`` < flags. The
dataset, model and method that select the layers are taken from the highest layer that sets
them. The resolved configuration is what the run saves (``config.yaml``, the checkpoint), so a
run never depends on a recipe file again once it has started.

>>> cfg = resolve_config({"dataset": "nmnist", "epochs": 2})
>>> cfg.epochs, cfg.model, cfg.recipe
(2, 'nmnist-cnn', 'nmnist')
>>> resolve_config({"dataset": "nmnist", "method": "bptt"}).method
'bptt'
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from ..config import ConfigError, TrainConfig

__all__ = ["RECIPE_KEYS", "available_recipes", "load_recipe", "recipe_layers", "resolve_config"]

#: the sections a recipe file may hold
RECIPE_KEYS = ("description", "settings", "models", "methods")


def available_recipes() -> list[str]:
    """The datasets that have a recipe file."""
    return sorted(
        p.name[: -len(".yaml")]
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".yaml")
    )


def load_recipe(dataset: str) -> dict[str, Any]:
    """The parsed recipe of ``dataset`` (``{}`` when it has none). Raises :class:`ConfigError`
    naming the file for an unknown section, an unknown setting or a value of the wrong type."""
    res = resources.files(__package__) / f"{dataset}.yaml"
    if not res.is_file():
        return {}
    where = f"recipe {dataset}.yaml"
    try:
        data = yaml.safe_load(res.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({first})") from None
    return check_recipe(data, where)


def check_recipe(data: Any, where: str) -> dict[str, Any]:
    """Validate a recipe mapping (sections, field names and types); returns it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a recipe must be a mapping of sections, got {type(data)}")
    unknown = sorted(set(data) - set(RECIPE_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown section(s) {', '.join(map(str, unknown))}; "
            f"a recipe holds {', '.join(RECIPE_KEYS)}"
        )
    _check_settings(data.get("settings") or {}, f"{where} settings")
    for section in ("models", "methods"):
        block = data.get(section) or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: {section} must map names to settings")
        for name, settings in block.items():
            settings = dict(settings or {})
            nested = settings.pop("methods", None) if section == "models" else None
            _check_settings(settings, f"{where} {section}.{name}")
            for method, more in (nested or {}).items():
                _check_settings(more or {}, f"{where} {section}.{name}.methods.{method}")
    return data


def _check_settings(settings: Any, where: str) -> None:
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {settings!r}")
    try:
        TrainConfig.from_dict(settings)
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"{where}: {' '.join(str(err).split())}") from None


def recipe_layers(settings: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The recipe layers that apply to ``settings`` (file + flags), lowest first, and the
    recipe's name (``""`` when the dataset has none)."""
    norm = {str(k).replace("-", "_"): v for k, v in settings.items()}
    defaults = TrainConfig()
    dataset = norm.get("dataset", defaults.dataset)
    recipe = load_recipe(str(dataset))
    if not recipe:
        return "", []
    base = dict(recipe.get("settings") or {})
    model = norm.get("model", base.get("model", defaults.model))
    model_block = dict((recipe.get("models") or {}).get(model) or {})
    model_methods = model_block.pop("methods", None) or {}
    method = norm.get("method", model_block.get("method", base.get("method", defaults.method)))
    layers = [
        base,
        model_block,
        dict((recipe.get("methods") or {}).get(method) or {}),
        dict(model_methods.get(method) or {}),
    ]
    return str(dataset), [layer for layer in layers if layer]


def resolve_config(settings: dict[str, Any], file_settings: dict[str, Any] | None = None):
    """The :class:`TrainConfig` of a run: recipe layers < ``file_settings`` < ``settings``.

    ``settings`` are the explicit choices (flags, or keyword arguments from Python);
    ``file_settings`` those of a ``--config`` file.
    """
    explicit = {**(file_settings or {}), **settings}
    name, layers = recipe_layers(explicit)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({str(k).replace("-", "_"): v for k, v in layer.items()})
    merged.update({str(k).replace("-", "_"): v for k, v in explicit.items()})
    merged.setdefault("recipe", name or None)
    return TrainConfig.from_dict(merged)
