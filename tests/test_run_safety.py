"""What a training run may not do to earlier runs, to its own last good state, or to the user:
overwrite another run's folder, share a folder with a live run, write diverged state over the
last sound one, train on no labels in silence, fail opaquely on a full disk, or always keep the
same first boxes of a crowded image.

Real runs of the micro network (``yolov3 train`` in this process, or as a subprocess where a
second live process is the point) on generated data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from data_factory import write_coco, write_voc, write_yolo
from test_train import train_args
from yolov3.cli.main import main
from yolov3.datasets.check import check_dataset
from yolov3.datasets.sample import Sample
from yolov3.fileio import FolderLock, atomic_write
from yolov3.inputs.augment import RandomBoxOrder, TrainTransform
from yolov3.inputs.loader import augment_rng
from yolov3.model.network import build_model
from yolov3.train.config import load_config
from yolov3.train.optim import build_optimizer
from yolov3.train.run_folder import LOCK_FILE, RUN_FILES
from yolov3.train.step import TrainStep
from yolov3.train.trainer import Trainer
from yolov3.weights.checkpoint import load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"


def quick(cfg: Path, out: Path | None, max_iter: int = 1, *extra: str) -> list[str]:
    """A run of ``max_iter`` iterations of 4 images (``out`` None: the default folder)."""
    args = train_args(cfg, out or Path("unused"), max_iter, *extra)
    if out is None:
        at = args.index("--out")
        del args[at : at + 2]
    return args


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# --- 2. a new run never writes into another run's folder -----------------------------------

def test_default_out_is_the_next_free_folder(micro_cfg, tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="yolov3"):
        assert main(quick(micro_cfg, None)) == 0
        first = (tmp_path / "runs/train/last.pt").read_bytes()
        assert main(quick(micro_cfg, None)) == 0
        assert main(quick(micro_cfg, None)) == 0
    assert (tmp_path / "runs/train/last.pt").read_bytes() == first  # untouched
    for name in ("train", "train2", "train3"):
        results = json.loads((tmp_path / "runs" / name / "results.json").read_text())
        assert results["out"] == str(Path("runs") / name)
        assert f"run folder: {Path('runs') / name}" in caplog.text
    assert not any(p.name == LOCK_FILE for p in (tmp_path / "runs").rglob("*"))


@pytest.mark.parametrize("left", ["last.pt", "best.pt", "results.json", "model.cfg"])
def test_a_folder_holding_a_run_is_refused_unless_resume_or_overwrite(
        left, micro_cfg, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(quick(micro_cfg, out)) == 0
    shutil.copy(out / "last.pt", out / "best.pt")  # as an evaluating run leaves it
    kept = {name: (out / name).read_bytes() for name in ("last.pt", "best.pt")}
    for name in RUN_FILES:  # the folder holds only ``left`` of the earlier run
        if name != left:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    capsys.readouterr()
    assert main(quick(micro_cfg, out)) == 1
    err = error_of(capsys)
    assert f"{out} holds an earlier run ({left})" in err
    assert f"--resume {out}" in err and "--overwrite" in err
    for name, data in kept.items():
        if (out / name).exists():
            assert (out / name).read_bytes() == data, name

    assert main(quick(micro_cfg, out, 1, "--overwrite")) == 0
    assert (out / "last.pt").is_file() and not (out / "best.pt").exists()  # no stale best.pt
    assert load_checkpoint(out / "last.pt")["state"]["iteration"] == 1


def test_overwrite_and_resume_together_or_another_out_are_refused(micro_cfg, tmp_path,
                                                                  capsys) -> None:
    out = tmp_path / "run"
    assert main(quick(micro_cfg, out)) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--overwrite"]) == 1
    assert "give one of them" in error_of(capsys)
    assert main(["train", "--resume", str(out), "--out", str(tmp_path / "other")]) == 1
    assert "its own folder" in error_of(capsys)


def test_help_names_the_folder_rules(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "runs/train2" in text and "--overwrite" in text and "--resume DIR" in text


def start_training(cfg: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """A long run in another process, writing a checkpoint every iteration."""
    args = train_args(cfg, out, 100_000, "--set", "train.checkpoint_interval=1", *extra)
    return subprocess.Popen([sys.executable, "-m", "yolov3", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(SRC)})


def wait_for_checkpoint(process: subprocess.Popen[str], out: Path) -> None:
    deadline = time.monotonic() + 120
    while not (out / "last.pt").is_file():
        assert process.poll() is None, process.communicate()[0][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_live_run_keeps_others_out_and_its_stale_lock_after_sigkill_does_not(
        micro_cfg, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    process = start_training(micro_cfg, out)
    try:
        wait_for_checkpoint(process, out)
        capsys.readouterr()
        for args in (quick(micro_cfg, out, 1, "--overwrite"), ["train", "--resume", str(out)]):
            assert main(args) == 1
            err = error_of(capsys)
            assert f"{out} is in use by another training run (pid {process.pid}" in err
        assert process.poll() is None  # undisturbed
    finally:
        process.kill()
        process.communicate()
    assert (out / LOCK_FILE).is_file()  # what SIGKILL leaves: no longer locked
    at = load_checkpoint(out / "last.pt")["state"]["iteration"]
    assert main(["train", "--resume", str(out), "--max-iter", str(at + 1)]) == 0
    assert load_checkpoint(out / "last.pt")["state"]["iteration"] == at + 1
    assert not (out / LOCK_FILE).exists()


def test_the_lock_file_names_its_owner_and_goes_with_it(tmp_path) -> None:
    with FolderLock(tmp_path, LOCK_FILE) as lock:
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
        assert lock.held
    assert not (tmp_path / LOCK_FILE).exists()


def test_partial_files_of_a_killed_write_are_removed_on_the_next_start(micro_cfg, tmp_path,
                                                                      caplog) -> None:
    out = tmp_path / "run"
    assert main(quick(micro_cfg, out)) == 0
    code = textwrap.dedent(f"""
        import os, signal
        from yolov3.fileio import atomic_write
        with atomic_write({str(out / "last.pt")!r}) as f:
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
                   check=False)
    left = [p for p in out.iterdir() if p.name.startswith(".last.pt.") and p.suffix == ".tmp"]
    assert len(left) == 1
    with caplog.at_level("INFO", logger="yolov3"):
        assert main(["train", "--resume", str(out), "--max-iter", "2"]) == 0
    assert not left[0].exists()
    assert "removed 1 partial files" in caplog.text


# --- 3. a diverged run leaves the last sound state to go back to ---------------------------

def state_of(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    for i, s in enumerate(optimizer.state.values()):
        tensors[f"momentum{i}"] = s["momentum_buffer"].clone()
    return tensors


def test_a_skipped_iteration_changes_nothing(micro_cfg) -> None:
    torch.manual_seed(0)
    model = build_model(micro_cfg).train()
    config = load_config(None, ["optimizer.batch=2", "optimizer.subdivisions=1"])
    optimizer = build_optimizer(model, config.optimizer)
    step = TrainStep(model, optimizer)
    images = torch.rand(2, 3, 64, 64)
    targets = [torch.tensor([[0, 0.5, 0.5, 0.3, 0.4]]), torch.zeros(0, 5)]
    assert np.isfinite(step([(images, targets)], 1e-3)["total"])
    before = state_of(model, optimizer)
    poisoned = images.clone()
    poisoned[0, :, :8, :8] = float("inf")  # the forward pass turns it into NaN statistics
    assert not np.isfinite(step([(poisoned, targets)], 1e-3)["total"])
    after = state_of(model, optimizer)
    for key, tensor in before.items():
        assert torch.equal(tensor, after[key]), key  # batch-norm statistics included


@pytest.mark.parametrize("lr", ["1e6", "1e12"])
def test_diverged_run_writes_the_last_sound_state_and_resumes_at_a_lower_lr(
        lr, micro_cfg, tmp_path, capsys) -> None:
    out = tmp_path / "diverge"
    # A checkpoint every iteration: the blown-up (finite) states were written before the NaNs.
    args = quick(micro_cfg, out, 40, "--set", f"optimizer.lr={lr}", "--set", "schedule.burn_in=0",
                 "--set", "train.max_nonfinite=2", "--set", "train.checkpoint_interval=1")
    assert main(args) == 1
    err = error_of(capsys)
    assert "training diverged" in err and "last sound state" in err and "--resume" in err
    saved = load_checkpoint(out / "last.pt")
    stopped = saved["state"]["iteration"]
    assert 2 <= stopped < 40
    tensors = [*saved["model"].values(),
               *(s["momentum_buffer"] for s in saved["optimizer"]["state"].values())]
    assert all(torch.isfinite(t.float()).all() for t in tensors)

    assert main(["train", "--resume", str(out), "--set", "optimizer.lr=0.01",
                 "--max-iter", str(stopped + 6)]) == 0
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["state"]["iteration"] == stopped + 6
    after = [r["total"] for r in resumed["state"]["losses"] if r["iteration"] > stopped]
    assert len(after) == 6 and all(np.isfinite(after))
    assert after[-1] < 1e3  # a loss per image of a network that learns, not of blown weights


def test_a_diverged_run_takes_its_moving_average_back_too(micro_cfg, tmp_path, capsys) -> None:
    # The step before the blow-up was sound, and the average took in the weights it gave
    # (weights of 1e12 at this lr, without the fix): they must not stay in the saved detector.
    out = tmp_path / "diverge-ema"
    args = quick(micro_cfg, out, 40, "--set", "optimizer.lr=1e12", "--set", "schedule.burn_in=0",
                 "--set", "train.max_nonfinite=2", "--set", "ema.decay=0.5",
                 "--set", "ema.ramp=1")
    assert main(args) == 1
    assert "training diverged" in error_of(capsys)
    saved = load_checkpoint(out / "last.pt")
    average, weights = saved["model"], saved["training_model"]
    assert saved["ema_updates"] < saved["state"]["iteration"]  # the blown-up steps taken out
    for key, tensor in average.items():
        if tensor.dtype.is_floating_point and "running_var" not in key:
            # an average of sound weights: the size of the weights it averages
            bound = 10 * max(1.0, float(weights[key].abs().max()))
            assert float(tensor.abs().max()) <= bound, key


# --- 5. no labels, no validation ------------------------------------------------------------

def yolo_run(data: Path, out: Path, cfg: Path, *extra: str) -> list[str]:
    return quick(cfg, out, 1, "--data", str(data), "--batch-size", "2", "--subdivisions", "1",
                 *extra)


def test_labels_in_the_wrong_folder_are_an_error_naming_where_they_were_looked_for(
        micro_cfg, tmp_path, capsys) -> None:
    data = write_yolo(tmp_path / "yolo")
    (tmp_path / "yolo" / "labels").rename(tmp_path / "yolo" / "annotations")
    out = tmp_path / "run"
    assert main(yolo_run(data, out, micro_cfg)) == 1
    err = error_of(capsys)
    assert "yolov3 train: error:" in err and "no boxes" in err
    assert str(tmp_path / "yolo" / "labels" / "val") in err  # where they were looked for
    assert not out.exists()  # stopped before anything was written (or the model built)


def test_voc_and_coco_without_boxes_name_their_annotations(micro_cfg, tmp_path,
                                                          capsys) -> None:
    voc = write_voc(tmp_path / "voc")
    for xml in (voc / "Annotations").glob("*.xml"):
        text = xml.read_text()
        xml.write_text(text[: text.find("<object>")] + "</annotation>" if "<object>" in text
                       else text)
    names = tmp_path / "voc" / "classes.txt"
    names.write_text("cat\ndog\nzebra\n")
    assert main(yolo_run(voc, tmp_path / "a", micro_cfg)) == 1
    err = error_of(capsys)
    assert "no boxes" in err and str(voc / "Annotations") in err

    coco = write_coco(tmp_path / "coco")
    data = json.loads(coco.read_text())
    data["annotations"] = []
    coco.write_text(json.dumps(data))
    assert main(yolo_run(coco, tmp_path / "b", micro_cfg)) == 1
    err = error_of(capsys)
    assert "no boxes" in err and str(coco) in err


@pytest.mark.parametrize("empty", ["no images", "no boxes"])
def test_an_empty_validation_split_is_a_warning_at_the_start(empty, micro_cfg, tmp_path,
                                                            caplog) -> None:
    data = write_yolo(tmp_path / "yolo")
    root = tmp_path / "yolo"
    (root / "images" / "held").mkdir()
    if empty == "no boxes":
        shutil.copy(root / "images" / "val" / "1.png", root / "images" / "held" / "1.png")
    data.write_text(data.read_text().replace("val: images/val", "val: images/held"))
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="yolov3"):
        assert main(yolo_run(data, out, micro_cfg, "--eval-interval", "1")) == 0
    assert f"the val split has {empty if empty == 'no images' else '1 images but no boxes'}" \
        in caplog.text
    assert "no validation AP will be computed and no best.pt written" in caplog.text
    assert not (out / "best.pt").exists()
    assert json.loads((out / "results.json").read_text())["best"]["AP50"] is None


# --- 8. a full disk -------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path):
    """A folder on a tmpfs of 240 KiB (a micro run's pictures, labels.png and train_batch*.jpg,
    take about 70 kB and a micro checkpoint about 105 kB: one checkpoint fits beside them, a
    second does not), for root where mounting works."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a small tmpfs: mounting one needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=240k", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_names_the_folder_and_keeps_the_previous_checkpoint(
        small_disk, micro_cfg, capsys) -> None:
    out = small_disk / "run"
    args = quick(micro_cfg, out, 4, "--set", "train.checkpoint_interval=1")
    assert main(args) == 1
    err = error_of(capsys)
    assert f"{out}: no space left on the disk: the checkpoint last.pt could not be written" in err
    assert "a checkpoint of this run needs at least" in err
    assert "the previous last.pt (iteration 1) is intact" in err
    assert load_checkpoint(out / "last.pt")["state"]["iteration"] == 1
    assert not [p for p in out.iterdir() if p.suffix == ".tmp"]
    assert not (out / LOCK_FILE).exists()


def test_a_disk_too_full_for_one_checkpoint_is_refused_at_the_start(small_disk, micro_cfg,
                                                                   capsys) -> None:
    (small_disk / "filler").write_bytes(b"x" * 180_000)  # 60 kB left: no checkpoint fits
    out = small_disk / "run"
    assert main(quick(micro_cfg, out)) == 1
    err = error_of(capsys)
    assert f"{out}: no space left on the disk for this run: a checkpoint needs at least" in err


def test_atomic_write_on_a_full_disk_is_a_clear_error(small_disk) -> None:
    from yolov3.fileio import DiskFullError

    path = small_disk / "big.bin"
    path.write_bytes(b"old")
    with pytest.raises(DiskFullError) as err, atomic_write(path) as f:
        f.write(b"x" * 400_000)
    assert str(small_disk) in str(err.value) and "no space left" in str(err.value)
    assert path.read_bytes() == b"old"
    assert [p.name for p in small_disk.iterdir()] == ["big.bin"]


# --- 10. more boxes than the cap ------------------------------------------------------------

def crowded(n: int) -> Sample:
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 400, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(20, 90, (n, 2))], 1).astype(np.float32)
    return Sample(rng.integers(0, 255, (500, 500, 3), dtype=np.uint8), boxes, np.arange(n), 1,
                  "x")


def test_an_image_over_the_cap_keeps_another_random_subset_each_epoch() -> None:
    transform = TrainTransform()
    sample = crowded(80)
    kept = []
    for position in (0, 4000, 8000, 12000):  # one stream position per epoch
        image, targets = RandomBoxOrder(transform)(sample, (320, 320), augment_rng(0, position))
        plain, _ = transform(sample, (320, 320), augment_rng(0, position))
        assert torch.equal(image, plain)  # the augmentation draws are the same
        assert len(targets) == 50
        kept.append(frozenset(targets[:, 0].int().tolist()))
    assert len(set(kept)) == 4 and all(k <= set(range(80)) for k in kept)
    assert frozenset(range(50)) not in kept
    # the same position gives the same subset (a resumed run sees the same data)
    again = RandomBoxOrder(transform)(sample, (320, 320), augment_rng(0, 4000))[1]
    assert frozenset(again[:, 0].int().tolist()) == kept[1]


def test_an_image_within_the_cap_is_transformed_bit_for_bit_as_before() -> None:
    transform = TrainTransform()
    for n in (3, 50):
        sample = crowded(n)
        a = RandomBoxOrder(transform)(sample, (416, 416), augment_rng(7, 11))
        b = transform(sample, (416, 416), augment_rng(7, 11))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def write_crowded_yolo(root: Path, boxes: int) -> Path:
    data = write_yolo(root)
    rng = np.random.default_rng(0)
    # each box its own width, to tell the kept ones apart
    lines = [f"0 {x:.4f} {y:.4f} {0.03 + 0.002 * k:.4f} 0.05\n"
             for k, (x, y) in enumerate(rng.uniform(0.1, 0.9, (boxes, 2)))]
    (root / "labels" / "val" / "1.txt").write_text("".join(lines))
    return data


def test_training_and_data_check_count_the_images_over_the_cap(micro_cfg, tmp_path,
                                                              caplog) -> None:
    data = write_crowded_yolo(tmp_path / "yolo", 60)
    report = check_dataset(data, "val", workers=1, progress=False)
    assert ("1 images have more than 50 boxes; each epoch keeps a random 50 of them "
            "(data.max_labels)") in report.text()
    assert report.splits[0].over_cap == 1
    with caplog.at_level("WARNING", logger="yolov3"):
        assert main(yolo_run(data, tmp_path / "run", micro_cfg)) == 0
    assert ("1 training images have more than 50 boxes; each epoch keeps a random 50 of them "
            "(data.max_labels)") in caplog.text


def test_the_training_loader_keeps_a_random_subset(micro_cfg, tmp_path) -> None:
    data = write_crowded_yolo(tmp_path / "yolo", 60)
    (tmp_path / "yolo" / "data.yaml").write_text(
        (tmp_path / "yolo" / "data.yaml").read_text().replace("train: images/val",
                                                              "train: images/one"))
    (tmp_path / "yolo" / "images" / "one").mkdir()
    shutil.copy(tmp_path / "yolo" / "images" / "val" / "1.png",
                tmp_path / "yolo" / "images" / "one" / "1.png")
    (tmp_path / "yolo" / "labels" / "one").mkdir()
    shutil.copy(tmp_path / "yolo" / "labels" / "val" / "1.txt",
                tmp_path / "yolo" / "labels" / "one" / "1.txt")
    config = load_config(None, [f"model.cfg={micro_cfg}", "model.weights=null",
                                f"data.dataset={data}", "optimizer.batch=1",
                                "optimizer.subdivisions=1", "schedule.max_iter=4",
                                "multiscale.interval=0", "data.img_size=320",
                                "train.workers=0", "augment.jitter=0", "augment.flip=0",
                                "augment.random_placing=false"])
    trainer = Trainer(config, tmp_path / "run")
    try:
        epochs = [targets[0] for _, targets, _ in trainer._loader()]
    finally:
        trainer.close()
    assert [len(t) for t in epochs] == [50] * 4
    widths = [frozenset(torch.round(t[:, 3] * 1000).int().tolist()) for t in epochs]
    assert all(len(w) == 50 for w in widths)  # 50 different boxes each time
    assert len(set(widths)) == 4  # another 50 every epoch
