"""Recipes as data, the new configuration fields, augmentation and the tuning split."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from spikelfp.datasets.augment import DropSpikes, RandomShift, make_augmentation
from spikelfp.training import recipes
from spikelfp.training.config import ConfigError, TrainConfig
from spikelfp.training.recipes import available_recipes, check_recipe, load_recipe, resolve_config


def test_every_shipped_recipe_is_valid_and_builds_its_model():
    from spikelfp.training.data import DATASET_SHAPES
    from spikelfp.training.models import build_model
    from spikelfp.training.trainer import spec_from_config

    assert {"nmnist", "mnist"} <= set(available_recipes())
    for name in available_recipes():
        recipe = load_recipe(name)
        cfg = resolve_config({"dataset": name})
        assert cfg.recipe == name
        shape, n_classes = DATASET_SHAPES[name]
        models = [cfg.model, *(recipe.get("models") or {})]
        for model in models:
            cfg = resolve_config({"dataset": name, "model": model})
            build_model(spec_from_config(cfg, shape, n_classes))


def test_precedence_recipe_then_file_then_flags():
    base = resolve_config({"dataset": "nmnist"})
    assert base.model == "nmnist-cnn" and base.val_fraction == 0.2
    # a model section of the recipe applies when that model is chosen
    mlp = resolve_config({"dataset": "nmnist", "model": "mlp"})
    assert mlp.channels is None and mlp.hidden == 512
    # the method section applies for bptt
    bptt = resolve_config({"dataset": "nmnist", "method": "bptt"})
    assert (bptt.bptt_loss, bptt.surrogate_slope) == ("mse", 5.0)
    # models.nmnist-cnn.methods.lfp: the larger shifts are LFP's, BPTT keeps the dataset's
    assert (base.augment, bptt.augment) == ({"shift": 2}, {"shift": 1})
    assert resolve_config({"dataset": "nmnist", "model": "mlp"}).augment == {"shift": 1}
    assert resolve_config({"dataset": "nmnist", "augment": {"shift": 0}}).augment == {"shift": 0}
    # a config file overrides the recipe, a flag overrides the file
    cfg = resolve_config({"lr": 0.5}, {"dataset": "nmnist", "lr": 0.1, "epochs": 3})
    assert (cfg.lr, cfg.epochs, cfg.model) == (0.5, 3, "nmnist-cnn")
    # no recipe: the dataclass defaults
    assert resolve_config({}).model == TrainConfig().model


def test_target_section_applies_only_with_that_target(monkeypatch):
    # braille.yaml's targets.xylo: what Xylo's integer network trains well with
    xylo = resolve_config({"dataset": "braille", "letters": "A,E", "target": "xylo"})
    got = (xylo.reward, xylo.taxels, xylo.hidden, xylo.lr, xylo.beta)
    assert got == ("rate", [1, 2, 6, 10], 128, 2e-3, 0.9375)
    plain = resolve_config({"dataset": "braille", "letters": "A,E"})
    assert plain.reward == "softmax" and plain.taxels is None and plain.lr == 5e-3
    # another target has no section: the dataset's settings
    assert resolve_config({"dataset": "braille", "target": "int8"}).reward == "softmax"
    # flags and --config files still win over the target's section
    cfg = resolve_config({"target": "xylo", "epochs": 3}, {"dataset": "braille", "hidden": 16})
    assert (cfg.epochs, cfg.hidden, cfg.reward) == (3, 16, "rate")
    # a target set by a config file selects its section too
    assert resolve_config({}, {"dataset": "braille", "target": "xylo"}).reward == "rate"
    # the section is validated like the others
    with pytest.raises(ConfigError, match=r"^x\.yaml targets\.xylo: unknown configuration key"):
        check_recipe({"targets": {"xylo": {"rewrd": "rate"}}}, "x.yaml")


def test_a_model_section_may_hold_targets():
    """models.<model>.targets.<target> applies above targets.<target>, below flags."""
    speck = resolve_config({"dataset": "nmnist", "model": "speck-cnn", "target": "speck"})
    assert (speck.lr, speck.lr_scaling, speck.lr_warmup, speck.epochs) == (0.05, "weight", 2, 30)
    assert speck.augment == {"shift": 2}
    plain = resolve_config({"dataset": "nmnist", "model": "speck-cnn"})
    assert (plain.lr, plain.lr_scaling, plain.lr_warmup, plain.augment) == (
        3e-3,
        "none",
        0,
        {"shift": 1},
    )
    assert resolve_config({"dataset": "nmnist", "target": "speck"}).lr == 3e-3  # nmnist-cnn
    flag = resolve_config({"dataset": "nmnist", "model": "speck-cnn", "target": "speck", "lr": 0.5})
    assert flag.lr == 0.5
    with pytest.raises(ConfigError, match=r"^x\.yaml models\.mlp\.targets\.int8: unknown"):
        check_recipe({"models": {"mlp": {"targets": {"int8": {"lrr": 1}}}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"^x\.yaml: models\.mlp\.targets must map names"):
        check_recipe({"models": {"mlp": {"targets": ["int8"]}}}, "x.yaml")


def test_recipe_errors_name_the_file_and_the_problem():
    with pytest.raises(ConfigError, match=r"^x\.yaml: unknown section\(s\) setings"):
        check_recipe({"setings": {}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"^x\.yaml settings: unknown configuration key 'lrr'"):
        check_recipe({"settings": {"lrr": 1}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"^x\.yaml models\.mlp: epochs must be an integer"):
        check_recipe({"models": {"mlp": {"epochs": "many"}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"x\.yaml models\.mlp\.methods\.bptt: unknown lr"):
        check_recipe({"models": {"mlp": {"methods": {"bptt": {"lr_schedule": "step"}}}}}, "x.yaml")
    # a misspelt model or method section would otherwise be ignored without a word
    with pytest.raises(ConfigError, match=r"^x\.yaml: unknown model 'nmnist-cn' in models; use"):
        check_recipe({"models": {"nmnist-cn": {"epochs": 3}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"^x\.yaml: unknown method 'lpf' in methods; use one"):
        check_recipe({"methods": {"lpf": {}}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"^x\.yaml models\.mlp: unknown method 'bpt' in"):
        check_recipe({"models": {"mlp": {"methods": {"bpt": {}}}}}, "x.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        check_recipe(["a"], "x.yaml")


def test_broken_shipped_recipe_is_one_line(monkeypatch, tmp_path):
    (tmp_path / "nmnist.yaml").write_text("settings: {epochs: [1, 2}\n")

    class Res:
        def __truediv__(self, name):
            return tmp_path / name

    monkeypatch.setattr(recipes.resources, "files", lambda pkg: Res())
    with pytest.raises(ConfigError, match=r"^recipe nmnist\.yaml: not valid YAML") as err:
        load_recipe("nmnist")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"augment": {"rotate": 1}}, "unknown augmentation 'rotate'"),
        ({"augment": {"shift": 1.5}}, "augment shift must be an integer"),
        ({"augment": {"drop": 1.0}}, r"augment drop must be a number in \[0, 1\)"),
        ({"augment": [1]}, "augment must be a mapping"),
        ({"channels": [4, 0]}, "channels must be a list of positive integers"),
        ({"neuron": "izhikevich"}, "unknown neuron 'izhikevich'"),
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"bias": "yes"}, "bias must be true or false"),
        ({"bin_ms": 0}, "bin-ms must be > 0"),
        ({"tune_fraction": 1.0}, r"tune-fraction must be in \[0, 1\)"),
        ({"eval_split": "tune"}, "eval-split 'tune' needs --tune-fraction > 0"),
        ({"encoding": "gray"}, "unknown encoding 'gray'"),
    ],
)
def test_new_fields_are_validated(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(settings)


def test_augmentations_are_seeded_and_keep_shape():
    x = (torch.rand(4, 6, 2, 10, 10) < 0.3).float()
    aug = make_augmentation({"shift": 2, "drop": 0.2})
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.sum() < x.sum()
    assert make_augmentation({}) is None and make_augmentation({"shift": 0}) is None
    # a shift moves a pixel; all time steps and channels of a sample move together
    one = torch.zeros(3, 1, 2, 7, 7)
    one[:, 0, :, 3, 3] = 1
    moved = RandomShift(2)(one, torch.Generator().manual_seed(0))
    pos = moved.nonzero()[:, 3:].unique(dim=0)
    assert pos.shape[0] == 1 and (pos - 3).abs().max() <= 2
    with pytest.raises(ValueError, match="p must be in"):
        DropSpikes(1.5)
    with pytest.raises(ValueError, match="max_shift must be an integer"):
        RandomShift(1.5)


def test_tune_split_is_carved_from_train_and_never_touches_val(tmp_path):
    from spikelfp.training.data import open_split

    cfg = TrainConfig(
        data_dir=str(tmp_path / "digits"), val_fraction=0.2, tune_fraction=0.25, time_bins=4
    )
    train = open_split(cfg, "train").dataset
    tune = open_split(cfg, "tune").dataset
    val = open_split(cfg, "val").dataset
    assert cfg.resolved_eval_split == "tune"

    def ids(d):
        out = None
        while hasattr(d, "indices"):
            out = list(d.indices) if out is None else [d.indices[i] for i in out]
            d = d.dataset
        return set(int(i) for i in out)

    a, b, c = ids(train), ids(tune), ids(val)
    assert not (a & b) and not (a & c) and not (b & c)
    full = open_split(TrainConfig(data_dir=cfg.data_dir, val_fraction=0.2, time_bins=4), "train")
    assert a | b == ids(full.dataset)
    # the val part does not depend on the training seed
    other = TrainConfig(data_dir=cfg.data_dir, val_fraction=0.2, time_bins=4, seed=5)
    assert ids(open_split(other, "val").dataset) == c


def test_cli_config_file_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"epochs": "x"}))
    proc = subprocess.run(
        [sys.executable, "-m", "spikelfp", "train", "--config", str(bad), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "epochs must be an integer" in lines[0]


def test_info_models_lists_the_zoo():
    proc = subprocess.run(
        [sys.executable, "-m", "spikelfp", "info", "--models", "--dataset", "mnist"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("mlp", "conv", "speck-cnn", "nmnist-cnn", "dvsgesture-cnn"):
        assert name in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "spikelfp", "info"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "give a CHECKPOINT" in proc.stderr
