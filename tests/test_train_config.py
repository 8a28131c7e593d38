"""The training config: the darknet preset, user files, command-line overrides, errors."""

from __future__ import annotations

import pytest
import yaml

from yolov3.configs import preset_path
from yolov3.errors import ConfigError
from yolov3.train import load_config


def test_preset_is_darknets_recipe():
    c = load_config()
    assert (c.model.cfg, c.model.weights, c.model.freeze) == ("yolov3", "backbone", 0)
    opt = c.optimizer
    assert (opt.lr, opt.momentum, opt.decay, opt.batch, opt.subdivisions) == (
        0.001, 0.9, 0.0005, 64, 16)
    assert opt.minibatch == 4
    s = c.schedule
    assert (s.burn_in, s.burn_in_power, s.steps, s.scales, s.max_iter) == (
        1000, 4.0, [400000, 450000], [0.1, 0.1], 500200)
    a = c.augment
    assert (a.jitter, a.random_placing, a.hue, a.saturation, a.exposure, a.flip) == (
        0.3, True, 0.1, 1.5, 1.5, 0.5)
    m = c.multiscale
    assert (m.interval, m.min_size, m.max_size, m.step) == (10, 320, 608, 32)
    assert (c.data.img_size, c.data.max_labels) == (416, 50)
    assert load_config("yolov3-coco-darknet") == c


def test_every_preset_value_has_a_comment():
    lines = preset_path("yolov3-coco-darknet").read_text().splitlines()
    values = [ln for ln in lines if ln.startswith("  ") and not ln.lstrip().startswith("#")]
    sections = yaml.safe_load("\n".join(lines)).values()
    assert len(values) == sum(len(section) for section in sections)
    assert all(" # " in ln for ln in values)


def test_file_then_command_line(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  cfg: yolov3-tiny\noptimizer:\n  batch: 8\n  subdivisions: 2\n"
                    "  lr: 1\nschedule:\n  steps: [100]\n  scales: [0.5]\n")
    c = load_config(path, ["optimizer.lr=0.002", "model.weights=null", "data.dataset=my.yaml"])
    assert c.model.cfg == "yolov3-tiny" and c.model.weights is None
    assert c.optimizer.lr == 0.002 and isinstance(c.optimizer.lr, float)
    assert (c.optimizer.batch, c.optimizer.minibatch) == (8, 4)
    assert (c.schedule.steps, c.schedule.scales) == ([100], [0.5])
    assert c.optimizer.momentum == 0.9  # untouched keys keep the preset's value
    assert c.data.dataset == "my.yaml"
    assert c.to_dict()["optimizer"]["batch"] == 8


def test_unknown_keys_are_named(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("optimizer:\n  learning_rate: 0.01\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown key 'optimizer.learning_rate'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"unknown key 'optimiser'"):
        load_config(overrides=["optimiser.lr=1"])
    with pytest.raises(ConfigError, match=r"unknown key 'schedule.max_iters'.*schedule.max_iter"):
        load_config(overrides=["schedule.max_iters=10"])


@pytest.mark.parametrize(("override", "message"), [
    ("optimizer.batch=1.5", r"'optimizer.batch' must be int, got 1.5"),
    ("augment.random_placing=3", r"'augment.random_placing' must be bool"),
    ("schedule.steps=1000", r"'schedule.steps' must be list"),
    ("schedule.steps=[1, a]", r"'schedule.steps' must be float, got 'a'"),
    ("optimizer=3", r"'optimizer' is a section"),
    ("optimizer.lr", r"expected section.key=value"),
    ("optimizer.subdivisions=3", r"optimizer.batch \(64\) must be a positive multiple"),
    ("schedule.scales=[0.1]", r"give one scale per step"),
    ("multiscale.max_size=600", r"multiscale.max_size must be a positive multiple of 32"),
])
def test_bad_values_are_explained(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optimizer:\n  lr: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml, line \d+: not valid YAML"):
        load_config(bad)
    flat = tmp_path / "flat.yaml"
    flat.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"flat.yaml: a config must be a mapping"):
        load_config(flat)
