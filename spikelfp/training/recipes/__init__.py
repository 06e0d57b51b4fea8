"""Recipes: the default training settings of each dataset, as data (one YAML file each).

A recipe is what ``spikelfp train --dataset X`` uses when no flag or ``--config`` file says
otherwise. Each file ``<dataset>.yaml`` beside this module holds

* ``settings``: :class:`~spikelfp.training.TrainConfig` fields for the dataset (its default
  model among them);
* ``models``: per-model overrides (``{model name: {field: value}}``), each of which may hold
  ``methods`` and ``targets`` sections of its own;
* ``methods``: per-method overrides (e.g. ``bptt``: the surrogate-gradient baseline's own
  recipe);
* ``targets``: per-hardware-target overrides (``spikelfp train --target T``: e.g. the inputs,
  decay and reward with which the target's integer network trains well).

Precedence, lowest first: the dataclass defaults < ``settings`` < ``models[model]`` <
``methods[method]`` < ``models[model].methods[method]`` < ``targets[target]`` <
``models[model].targets[target]`` < ``--config FILE`` < flags. The dataset, model, method
and target that select the layers are taken from the highest layer that sets them. The
resolved configuration is what the run saves (``config.yaml``, the checkpoint), so a run never
depends on a recipe file again once it has started.

>>> cfg = resolve_config({"dataset": "nmnist", "epochs": 2})
>>> cfg.epochs, cfg.model, cfg.recipe
(2, 'nmnist-cnn', 'nmnist')
>>> resolve_config({"dataset": "nmnist", "method": "bptt"}).method
'bptt'
>>> xylo = resolve_config({"dataset": "braille", "letters": "A,E,I", "target": "xylo"})
>>> xylo.reward, xylo.taxels
('rate', [1, 2, 6, 10])
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from ..config import METHODS, ConfigError, TrainConfig

__all__ = ["RECIPE_KEYS", "available_recipes", "load_recipe", "recipe_layers", "resolve_config"]

#: the sections a recipe file may hold
RECIPE_KEYS = ("description", "settings", "models", "methods", "targets")


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
    for section in ("models", "methods", "targets"):
        block = data.get(section) or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: {section} must map names to settings")
        for name, settings in block.items():
            _check_name(section, name, where)
            settings = dict(settings or {})
            nested = {}
            if section == "models":
                for inner in ("methods", "targets"):
                    nested[inner] = settings.pop(inner, None) or {}
                    if not isinstance(nested[inner], dict):
                        raise ConfigError(
                            f"{where}: models.{name}.{inner} must map names to settings"
                        )
            _check_settings(settings, f"{where} {section}.{name}")
            for inner, block2 in nested.items():
                for key, more in block2.items():
                    _check_name(inner, key, f"{where} models.{name}")
                    _check_settings(more or {}, f"{where} {section}.{name}.{inner}.{key}")
    return data


def _check_name(section: str, name: Any, where: str) -> None:
    """A ``models`` or ``methods`` key must name a zoo model or a training method (a typo
    would otherwise be ignored silently); ``targets`` keys are profile names or files."""
    if section == "targets":
        return
    from ..models import MODELS

    known = MODELS if section == "models" else METHODS
    if name not in known:
        raise ConfigError(
            f"{where}: unknown {section[:-1]} {name!r} in {section}; use one of {', '.join(known)}"
        )


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
    model_targets = model_block.pop("targets", None) or {}
    method = norm.get("method", model_block.get("method", base.get("method", defaults.method)))
    method_block = dict((recipe.get("methods") or {}).get(method) or {})
    layers = [base, model_block, method_block, dict(model_methods.get(method) or {})]
    target = norm.get("target")
    if "target" not in norm:
        for layer in layers:
            target = layer.get("target", target)
    if target is not None:
        layers.append(dict((recipe.get("targets") or {}).get(str(target)) or {}))
        layers.append(dict(model_targets.get(str(target)) or {}))
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
    if merged.get("init") is not None and "dropout" not in explicit:
        merged["dropout"] = 0.0  # a recipe's dropout layers are the zoo model's, not the graph's
    merged.setdefault("recipe", name or None)
    return TrainConfig.from_dict(merged)
