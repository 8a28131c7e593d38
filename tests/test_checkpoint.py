"""Checkpoints load safely and rebuild their model; pretrained weights cross class counts."""

from __future__ import annotations

import pickle

import pytest
import torch

import yolov3
from yolov3.errors import WeightsError
from yolov3.fileio import atomic_write
from yolov3.weights.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from yolov3.weights.load import load_model, load_pretrained


def test_checkpoint_rebuilds_model_and_names(tmp_path) -> None:
    model = yolov3.build_model("yolov3-tiny", num_classes=2).eval()
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, ["cat", "dog"], iteration=7, best=0.5)
    payload = torch.load(path, weights_only=True)
    assert payload["iteration"] == 7 and payload["names"] == ["cat", "dog"]
    x = torch.rand(1, 3, 128, 96)
    for cfg in (None, "yolov3-tiny"):  # the checkpoint's own network, or a cfg that agrees
        again, names = load_model(cfg, path)
        assert names == ["cat", "dog"] and again.num_classes == 2
        with torch.no_grad():
            torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_checkpoint_whose_names_do_not_match_its_classes_is_an_error(tmp_path) -> None:
    path = tmp_path / "short.pt"
    save_checkpoint(path, yolov3.build_model("yolov3-tiny", num_classes=3), ["cat", "dog"])
    with pytest.raises(WeightsError, match="names 2 classes but its network has 3"):
        load_model(None, path)


def test_checkpoint_of_another_network_than_the_cfg_is_an_error(tmp_path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, yolov3.build_model("yolov3-tiny", num_classes=2), ["cat", "dog"])
    with pytest.raises(WeightsError, match=r"another network than yolov3 \(layers\.0\.conv"):
        load_model("yolov3", path)


class _Payload:
    def __reduce__(self):
        return (open, ("/tmp/yolov3-pwned-marker", "w"))


def test_pickle_with_code_is_refused_and_does_not_run(tmp_path) -> None:
    marker = "/tmp/yolov3-pwned-marker"
    import os

    if os.path.exists(marker):
        os.remove(marker)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "yolov3-checkpoint", "model": _Payload()}, evil)
    with pytest.raises(WeightsError, match="refused to load") as refused:
        load_checkpoint(evil)
    assert "\x1b" not in str(refused.value)  # torch's message without its terminal colours
    assert not os.path.exists(marker)
    with pytest.raises(WeightsError, match="refused to load"):
        load_model("yolov3-tiny", evil)
    assert not os.path.exists(marker)


def test_plain_pickle_and_foreign_zip_are_refused(tmp_path) -> None:
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsError):
        load_checkpoint(plain)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(WeightsError, match="not a yolov3 checkpoint"):
        load_checkpoint(foreign)


def test_interrupted_write_keeps_the_previous_file(tmp_path) -> None:
    path = tmp_path / "last.pt"
    model = yolov3.build_model("yolov3-tiny").eval()
    save_checkpoint(path, model, ["a"] * 80, iteration=1)
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write(b"half a checkpoint")
        raise RuntimeError("killed mid-write")
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_fine_tuning_start_keeps_all_but_the_class_heads(tiny_weights) -> None:
    coco = yolov3.from_darknet("yolov3-tiny", tiny_weights)
    model = yolov3.build_model("yolov3-tiny", num_classes=1)
    message = load_pretrained(model, tiny_weights)
    assert "except 4 tensors" in message and "layers 15, 22" in message
    for name, tensor in model.state_dict().items():
        theirs = coco.state_dict()[name]
        if name.startswith(("layers.15.", "layers.22.")):
            assert tensor.shape != theirs.shape
            # Box and objectness channels (the first 5 of each anchor) come from the file.
            torch.testing.assert_close(tensor.view(3, 6, -1)[:, :5], theirs.view(3, 85, -1)[:, :5])
        else:
            torch.testing.assert_close(tensor, theirs)


def test_model_from_checkpoint_with_wrong_tensors(tmp_path) -> None:
    model = yolov3.build_model("yolov3-tiny")
    path = tmp_path / "x.pt"
    save_checkpoint(path, model, ["a"] * 80)
    payload = load_checkpoint(path)
    payload["model"]["layers.0.conv.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match="do not fit the embedded cfg"):
        model_from_checkpoint(payload, path)
