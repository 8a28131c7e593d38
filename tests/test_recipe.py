"""The switches of the improved recipes, each on values: the IoU box losses against torchvision's
on the boxes the YOLO layer decodes, the assignment thresholds, label smoothing, the IoU
objectness target, the moving average against its formula, the lr policies, AdamW and Nesterov,
and a resumed run with the average on that ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, box_iou, complete_box_iou_loss, generalized_box_iou_loss

from test_train import train_args
from yolov3.cli.main import main
from yolov3.errors import ConfigError
from yolov3.loss import AssignRule, LossOptions, assign_targets, ignore_mask, padded_gt_boxes
from yolov3.loss.yolo_loss import layer_loss, yolo_loss
from yolov3.model.layers import YOLOLayer
from yolov3.train.config import load_config
from yolov3.train.ema import WeightsEMA
from yolov3.train.optim import build_optimizer, learning_rate, lr_factor
from yolov3.weights.checkpoint import load_checkpoint

ANCHORS = [(10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319)]
S = 128  # input side: a 4 x 4 grid at stride 32


def big_layer() -> YOLOLayer:
    return YOLOLayer(ANCHORS, [3, 4, 5], num_classes=2)


def case(seed: int = 0) -> tuple[YOLOLayer, torch.Tensor, list[torch.Tensor]]:
    """A stride-32 layer, its raw outputs for 2 images and one GT per image, each learned by
    this layer (large boxes) in its own cell."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(2, 3, 4, 4, 7, generator=g).requires_grad_(True)
    targets = [torch.tensor([[0, 0.30, 0.40, 0.70, 0.60]]),
               torch.tensor([[1, 0.70, 0.30, 0.90, 0.80]])]
    return big_layer(), raw, targets


def absolute_boxes(layer, raw, targets, rule=None):
    """The decoded predictions and the GT boxes (x1, y1, x2, y2 input pixels) of the responsible
    cells, computed without the loss's cell-relative shortcut, and the layer's targets."""
    assignment = assign_targets([layer], [(4, 4)], targets, (S, S), rule or AssignRule())
    lt = assignment.layers[0]
    decoded = layer.decode(raw, (S, S))[lt.cells.unbind(1)][:, :4]
    m = assignment.matches
    gt = torch.cat(targets)[m.gt, 1:5] * S
    # Rows of the matches in the order of the cells (one GT per cell here).
    key = lambda b, a, j, i: ((b * 3 + a) * 4 + j) * 4 + i  # noqa: E731
    order = torch.argsort(key(m.image, m.layer_anchor, m.cell_j, m.cell_i))
    return (box_convert(decoded, "cxcywh", "xyxy"), box_convert(gt[order], "cxcywh", "xyxy"),
            lt)


@pytest.mark.parametrize(("name", "reference"), [("giou", generalized_box_iou_loss),
                                                 ("ciou", complete_box_iou_loss)])
def test_iou_box_losses_equal_torchvisions_on_the_decoded_boxes(name, reference) -> None:
    layer, raw, targets = case()
    pred, gt, lt = absolute_boxes(layer, raw, targets)
    ignored = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    parts = layer_loss(raw, lt, ignored, LossOptions(box=name, box_gain=2.5), (32.0, 32.0))
    assert set(parts) == {"box", "obj", "cls"}
    expected = 2.5 * reference(pred, gt, reduction="sum")
    assert len(lt.cells) == 2
    torch.testing.assert_close(parts["box"], expected, rtol=1e-5, atol=1e-5)
    parts["box"].backward()
    assert raw.grad is not None and raw.grad[..., 0:4].abs().sum() > 0


def test_darknet_options_give_darknets_parts_and_gains_scale_them() -> None:
    layer, raw, targets = case()
    gt_boxes, gt_valid = padded_gt_boxes(targets, (S, S), raw.device)
    ignored = ignore_mask(layer, raw, gt_boxes, gt_valid, (S, S))
    _, _, lt = absolute_boxes(layer, raw, targets)
    plain = layer_loss(raw, lt, ignored)
    gained = layer_loss(raw, lt, ignored, LossOptions(box_gain=2, obj_gain=3, cls_gain=0.5))
    assert list(plain) == ["xy", "wh", "obj", "cls"]
    for part, gain in (("xy", 2), ("wh", 2), ("obj", 3), ("cls", 0.5)):
        torch.testing.assert_close(gained[part], gain * plain[part])


def test_label_smoothing_and_iou_objectness_targets() -> None:
    layer, raw, targets = case(1)
    pred, gt, lt = absolute_boxes(layer, raw, targets)
    ignored = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    eps = 0.2
    parts = layer_loss(raw, lt, ignored, LossOptions(label_smoothing=eps, obj_target="iou"),
                       (32.0, 32.0))
    logits = raw[lt.cells.unbind(1)]
    smoothed = torch.tensor([[0.9, 0.1], [0.1, 0.9]])  # one-hots 1 - eps/2, eps/2
    torch.testing.assert_close(parts["cls"], F.binary_cross_entropy_with_logits(
        logits[:, 5:], smoothed, reduction="sum"))
    iou = box_iou(pred, gt).diagonal().detach()
    obj_target = torch.zeros(2, 3, 4, 4)
    obj_target[lt.cells.unbind(1)] = iou
    torch.testing.assert_close(parts["obj"], F.binary_cross_entropy_with_logits(
        raw[..., 4], obj_target, reduction="sum"))
    assert iou.min() > 0 and iou.max() < 1


def test_threshold_assignment_adds_every_anchor_above_it_and_keeps_the_best() -> None:
    # One 60 x 60 GT at a 416 input: shape IoUs with the 6 anchors, computed by hand.
    gt_wh = torch.tensor([[60.0, 60.0]])
    anchors = torch.tensor(ANCHORS, dtype=torch.float32)
    inter = torch.minimum(anchors, gt_wh).prod(1)
    iou = inter / (anchors.prod(1) + 3600 - inter)
    best, _ = AssignRule().responsible(gt_wh, anchors)
    assert best[0].nonzero().flatten().tolist() == [int(iou.argmax())]
    chosen, got_iou = AssignRule("iou", 0.3).responsible(gt_wh, anchors)
    torch.testing.assert_close(got_iou[0], iou)
    assert chosen[0].tolist() == (iou > 0.3).tolist() and chosen[0].sum() >= 2
    # Ratio: width and height within a factor 2 of the anchor's.
    ratio, _ = AssignRule("ratio", 2.0).responsible(gt_wh, anchors)
    r = torch.maximum(anchors / 60, 60 / anchors).amax(1)
    assert ratio[0].tolist() == ((r < 2.0) | (iou == iou.max())).tolist()
    # A threshold above every IoU still leaves the best anchor responsible.
    assert AssignRule("iou", 0.99).responsible(gt_wh, anchors)[0].sum() == 1


def test_threshold_assignment_trains_several_anchors_of_a_gt() -> None:
    small = YOLOLayer(ANCHORS, [0, 1, 2], num_classes=2)
    raw = [torch.randn(1, 3, 4, 4, 7), torch.randn(1, 3, 8, 8, 7)]
    target = [torch.tensor([[0, 0.5, 0.5, 0.45, 0.45]])]  # 58 px at 128: near anchors 2, 3
    rule = AssignRule("iou", 0.2)
    m = assign_targets([big_layer(), small], [(4, 4), (8, 8)], target, (S, S), rule).matches
    assert len(m.gt) >= 2 and set(m.gt.tolist()) == {0}
    assert (m.anchor_iou > 0.2).all()
    total, _ = yolo_loss([big_layer(), small], raw, target, (S, S),
                             LossOptions(assign=rule))
    darknet_total, _ = yolo_loss([big_layer(), small], raw, target, (S, S))
    assert torch.isfinite(total) and total != darknet_total


def test_weights_ema_follows_its_formula() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1))
    ema = WeightsEMA(net, decay=0.9, ramp=2.0)
    expected = net[0].weight.detach().clone()
    for n in range(1, 6):
        with torch.no_grad():
            net[0].weight.add_(1.0)
            net[1].running_mean.add_(0.5)
        ema.update()
        d = 0.9 * (1 - math.exp(-n / 2.0))
        expected = d * expected + (1 - d) * net[0].weight.detach()
    torch.testing.assert_close(ema.model[0].weight, expected)
    assert 0 < float(ema.model[1].running_mean) < float(net[1].running_mean)
    assert ema.updates == 5 and not ema.model[0].weight.requires_grad


def test_lr_policies() -> None:
    cfg = load_config(None, ["schedule.policy=cosine", "schedule.burn_in=10",
                             "schedule.burn_in_power=1", "schedule.max_iter=110",
                             "schedule.final_lr=0.1"])
    sched = cfg.schedule
    assert lr_factor(5, sched) == pytest.approx(0.5)  # linear warm-up
    assert lr_factor(10, sched) == pytest.approx(1.0)
    assert lr_factor(60, sched) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down
    assert lr_factor(110, sched) == pytest.approx(0.1)
    sched.policy = "onecycle"
    assert lr_factor(0, sched) == pytest.approx(0.1)
    assert lr_factor(5, sched) == pytest.approx(0.55)
    assert lr_factor(110, sched) == pytest.approx(0.1)
    darknet = load_config(None).schedule
    assert lr_factor(500, darknet) == pytest.approx(0.5 ** 4)
    assert lr_factor(420_000, darknet) == pytest.approx(0.1)


def test_adamw_and_nesterov() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    cfg = load_config(None, ["optimizer.name=adamw", "optimizer.lr=0.002"])
    adamw = build_optimizer(net, cfg.optimizer)
    assert isinstance(adamw, torch.optim.AdamW)
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.0005, 0.0]
    assert learning_rate(2000, cfg) == pytest.approx(0.002)  # not divided by the batch
    sgd = build_optimizer(net, load_config(None, ["optimizer.nesterov=true"]).optimizer)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    assert sgd.param_groups[0]["weight_decay"] == pytest.approx(0.0005 * 64)


@pytest.mark.parametrize(("override", "words"), [
    ("loss.box=iou", "loss.box must be one of darknet, giou, diou, ciou"),
    ("loss.assign=iou", "loss.assign_threshold is the shape IoU"),
    ("loss.label_smoothing=1.5", "loss.label_smoothing must be in [0, 1)"),
    ("ema.decay=1", "ema.decay must be in [0, 1)"),
    ("schedule.policy=poly", "schedule.policy must be one of steps, cosine, onecycle"),
    ("optimizer.name=adam", "optimizer.name must be one of sgd, adamw"),
    ("augment.mosaic=2", "augment.mosaic is a probability"),
    ("loss.ignore_thresh=high", "loss.ignore_thresh is the IoU with a ground truth above which"),
    ("loss.ignore_thresh=1.2", "in [0, 1], or 'cfg' (the cfg's [yolo] ignore_thresh); got 1.2"),
])
def test_bad_switch_values_are_named(override, words) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, [override])
    assert words in str(info.value)


IMPROVED = ("--set", "ema.decay=0.9", "--set", "ema.ramp=2", "--set", "loss.box=giou",
            "--set", "loss.assign=iou", "--set", "loss.assign_threshold=0.2",
            "--set", "loss.obj_target=iou", "--set", "schedule.policy=cosine",
            "--set", "augment.mosaic=1.0", "--set", "augment.mixup=0.5",
            "--set", "augment.scale=0.3", "--set", "optimizer.nesterov=true",
            "--set", "loss.ignore_thresh=0.5")


@pytest.mark.slow
def test_resume_with_the_average_and_mosaic_is_bit_identical(micro_cfg, tmp_path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(train_args(micro_cfg, straight, 6, *IMPROVED)) == 0
    # The cosine schedule depends on max_iter: the split run stops early by its time limit
    # (after its first iteration) and is resumed to the same max_iter.
    assert main(train_args(micro_cfg, split, 6, *IMPROVED, "--set", "train.time_limit=1e-6")) == 0
    assert load_checkpoint(split / "last.pt")["state"]["iteration"] == 1
    assert main(["train", "--resume", str(split), "--set", "train.time_limit=0"]) == 0
    for name in ("labels.png", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg"):
        assert (straight / name).is_file() and (split / name).is_file(), name
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["ema_updates"] == b["ema_updates"] == 6
    for key in ("model", "training_model"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    # "model" is the average (what detect loads), not the trained weights.
    differs = [n for n, t in a["model"].items()
               if t.is_floating_point() and not torch.equal(t, a["training_model"][n])]
    assert differs
    assert set(a["state"]["losses"][0]) == {"iteration", "box", "obj", "cls", "total"}
    # loss.ignore_thresh is written into every [yolo] layer, where darknet reads it
    for cfg in (a["cfg"], (straight / "model.cfg").read_text()):
        yolo = cfg.split("[yolo]")[1:]
        assert yolo and all("ignore_thresh=0.5\n" in part for part in yolo)


# The darknet preset on the micro network and the generated demo data, 4 iterations (training
# augmentation and multi-scale on): the loss parts per image and the sum of the absolute
# values of all trained tensors, as main printed them before the recipe switches existed
# (commit 3fc935a). Tolerances allow other CPUs' float rounding, not another recipe.
DARKNET_LOSSES = [
    {"xy": 7.50596321, "wh": 1.48326123, "obj": 104.119408, "cls": 7.722561,
     "total": 120.8312},
    {"xy": 10.7975621, "wh": 3.63210142, "obj": 100.56963, "cls": 12.0411897,
     "total": 127.040482},
    {"xy": 7.89902449, "wh": 2.43429595, "obj": 34.5609045, "cls": 7.90225029,
     "total": 52.7964745},
    {"xy": 9.24286747, "wh": 1.2059381, "obj": 15.3781223, "cls": 11.0135698,
     "total": 36.840498},
]
DARKNET_WEIGHTS_ABS_SUM = 801.7756700355849


def test_darknet_preset_trains_as_before_the_switches(micro_cfg, tmp_path) -> None:
    assert main(train_args(micro_cfg, tmp_path / "run", 4)) == 0
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert "training_model" not in checkpoint  # no moving average in darknet's recipe
    losses = checkpoint["state"]["losses"]
    assert [r["iteration"] for r in losses] == [1, 2, 3, 4]
    for got, expected in zip(losses, DARKNET_LOSSES, strict=True):
        for part, value in expected.items():
            assert got[part] == pytest.approx(value, rel=1e-4), part
    total = sum(float(v.double().abs().sum()) for v in checkpoint["model"].values()
                if v.is_floating_point())
    assert total == pytest.approx(DARKNET_WEIGHTS_ABS_SUM, rel=1e-6)


def test_every_preset_loads_and_darknets_have_every_switch_off() -> None:
    from yolov3.configs import packaged_presets

    presets = packaged_presets()
    assert {"yolov3-coco-darknet", "yolov3-coco-improved", "finetune", "finetune-darknet",
            "demo"} <= set(presets)
    configs = {name: load_config(name) for name in presets}
    for name in ("yolov3-coco-darknet", "finetune-darknet"):
        c = configs[name]
        assert c.loss.build() == LossOptions(), name
        assert (c.ema.decay, c.augment.scale, c.augment.mosaic, c.augment.mixup) == (0, 0, 0, 0)
        assert (c.schedule.policy, c.optimizer.name, c.optimizer.nesterov) == ("steps", "sgd",
                                                                              False)
        assert c.data.aspect == 1.0 and c.data.input_hw == (c.data.img_size,) * 2, name
        assert c.loss.ignore_thresh == "cfg" and c.loss.ignore_override is None, name
    # finetune: darknet's fine-tuning recipe with the switches the README's kangaroo tables chose
    finetune = configs["finetune"]
    assert (finetune.augment.scale, finetune.loss.obj_target, finetune.loss.ignore_thresh) == (
        0.3, "iou", 0.5)
    assert (finetune.ema.decay, finetune.ema.ramp, finetune.train.channels_last) == (0.99, 20,
                                                                                     True)
    assert (finetune.loss.box, finetune.loss.assign, finetune.augment.mosaic,
            finetune.augment.mixup, finetune.schedule.policy, finetune.optimizer.name) == (
        "darknet", "best", 0, 0, "steps", "sgd")
    improved = configs["yolov3-coco-improved"]
    assert improved.loss.box == "giou" and improved.ema.decay == 0.9999
    assert improved.augment.mosaic == 1.0 and improved.schedule.policy == "cosine"
    # The improved COCO recipe keeps darknet's network, data and schedule length.
    darknet = configs["yolov3-coco-darknet"]
    assert (improved.model, improved.data, improved.schedule.max_iter) == (
        darknet.model, darknet.data, darknet.schedule.max_iter)
