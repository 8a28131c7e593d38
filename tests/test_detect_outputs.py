"""``yolov3 detect`` keeps its results when it is stopped: detections.jsonl grows as the images
are done (one record a line, flushed after each image), an interrupted run (Ctrl-C) still writes
detections.json with what was done, and a full disk is one clear error naming the folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import sigint_as_ctrl_c
from yolov3.cli.main import main

FIELDS = {"file_name", "category_id", "category_name", "bbox", "score"}


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def copies(photo: Path, folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{k:02d}.png" for k in range(n)]
    for path in paths:
        shutil.copy(photo, path)
    return paths


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("yolov3 detect: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_detections_are_written_one_a_line_and_as_a_list(photos, tiny_weights, tmp_path,
                                                         capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos["coffee"], folder / "a_coffee.png")
    shutil.copy(photos["motorcycle_left"], folder / "b_moto.png")
    Image.new("RGB", (64, 48), (127, 127, 127)).save(folder / "c_grey.png")  # nothing found
    out = tmp_path / "out"
    args = ["detect", str(folder), "--weights", str(tiny_weights), "--model", "yolov3-tiny",
            "--out", str(out)]
    (out).mkdir()
    (out / "detections.jsonl").write_text('{"an earlier run": 1}\n')  # replaced, not appended
    assert main(args) == 0
    lines = read_lines(out / "detections.jsonl")
    records = json.loads((out / "detections.json").read_text())
    assert lines == records and len(records) >= 2
    assert all(set(r) == FIELDS for r in records)
    by_file = {Path(r["file_name"]).name: r for r in records}
    assert by_file["a_coffee.png"]["category_name"] == "cup"
    assert by_file["b_moto.png"]["category_name"] == "motorbike"
    assert "c_grey.png" not in by_file  # an image without detections has no line
    # In the order the images were done, each line a whole record.
    order = [Path(r["file_name"]).name for r in lines]
    assert order == sorted(order)
    assert all(line.startswith("{") and line.endswith("}")
               for line in (out / "detections.jsonl").read_text().splitlines())
    printed = capsys.readouterr().out
    assert f"3 images (input 416x416), {len(records)} detections written to " \
           f"{out}/detections.json" in printed


def test_ctrl_c_keeps_what_was_done(photos, tiny_weights, tmp_path) -> None:
    """A real Ctrl-C (SIGINT) to ``yolov3 detect`` in its own process once the first image's
    detections are on disk."""
    n = 60
    copies(photos["coffee"], tmp_path / "in", n)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "yolov3", "detect", str(tmp_path / "in"), "--weights",
         str(tiny_weights), "--model", "yolov3-tiny", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        preexec_fn=sigint_as_ctrl_c,
    )
    lines = out / "detections.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (lines.is_file() and lines.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no detections after 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("yolov3 detect: interrupted after ") and f" of {n} images" in last
    done = int(last.split("interrupted after ")[1].split()[0])
    assert 1 <= done < n
    records = json.loads((out / "detections.json").read_text())
    assert read_lines(lines) == records  # both files hold what was done
    assert {Path(r["file_name"]).name for r in records} == {f"{k:02d}.png" for k in range(done)}
    assert all(r["category_name"] == "cup" for r in records)
    assert f"their {len(records)} detections are in {out}/detections.jsonl" in last
    for r in records:  # each image done has its whole annotated picture
        with Image.open(out / Path(r["file_name"]).name) as picture:
            picture.load()
    assert stdout.count(" -> ") == done  # one printed line per image done, as it was done


def _full(path: Path) -> None:
    """Make ``path`` a file on which every write fails with ENOSPC (a full disk)."""
    path.symlink_to("/dev/full")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_for_the_detections_is_one_error(photos, tiny_weights, tmp_path,
                                                   capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _full(out / "detections.jsonl")
    code = main(["detect", str(photos["coffee"]), "--weights", str(tiny_weights), "--model",
                 "yolov3-tiny", "--out", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1
    assert f"{out}: cannot write the detection results there (No space left on device)" in line
    assert "free some space or choose another --out" in line
    assert not (out / "detections.json").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_for_a_picture_keeps_the_images_done(photos, tiny_weights, tmp_path,
                                                       capsys) -> None:
    copies(photos["coffee"], tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    _full(out / "01.png")  # the second image's annotated copy cannot be written
    code = main(["detect", str(tmp_path / "in"), "--weights", str(tiny_weights), "--model",
                 "yolov3-tiny", "--out", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 1 and f"{out}: cannot write the detection results there (No space" in line
    assert f"the 1 images done before are in {out}/detections.jsonl" in line
    assert [Path(r["file_name"]).name for r in read_lines(out / "detections.jsonl")] == ["00.png"]
    assert sorted(p.name for p in out.iterdir()) == ["00.png", "detections.jsonl"]


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True)
    return result.returncode == 0


def test_a_really_full_disk_is_one_error(photos, tiny_weights, tmp_path, capsys) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        copies(photos["coffee"], tmp_path / "in", 4)  # ~450 kB an annotated copy
        out = disk / "out"
        code = main(["detect", str(tmp_path / "in"), "--weights", str(tiny_weights), "--model",
                     "yolov3-tiny", "--out", str(out)])
        line = one_error_line(capsys.readouterr().err)
        assert code == 1
        assert f"{out}: cannot write the detection results there (No space left on device)" \
            in line
        kept = read_lines(out / "detections.jsonl")  # whole lines, one per image done
        pictures = sorted(p.name for p in out.glob("*.png"))
        assert pictures == [Path(r["file_name"]).name for r in kept][:len(pictures)]
        for name in pictures:  # no part-written picture is left
            with Image.open(out / name) as picture:
                picture.load()
    finally:
        subprocess.run(["umount", str(disk)], check=False)
