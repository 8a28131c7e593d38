"""Annotated videos are H.264 (which browsers play) where OpenCV or PyAV can write it, else
MPEG-4 Part 2; the codec said is the codec in the file, as OpenCV reads it back."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import MICRO3_CFG
from data_factory import NAMES
from yolov3.errors import YoloError
from yolov3.inference.video import VIDEO_CODECS, AnnotatedVideo

# The fourccs OpenCV reads back (FFmpeg's codec tags) for a file of each codec written.
READ_BACK = {"avc1": {"avc1", "h264", "H264", "x264", "X264"},
             "mp4v": {"mp4v", "MP4V", "FMP4", "XVID", "DIVX", "DX50"}}
PYAV = importlib.util.find_spec("av") is not None


def frames(width: int, height: int, count: int = 5) -> list[np.ndarray]:
    """Grey frames with a white square moving right."""
    out = []
    for k in range(count):
        frame = np.full((height, width, 3), 90, np.uint8)
        frame[8:24, 4 * k:4 * k + 16] = 255
        out.append(frame)
    return out


def write(path: Path, pictures: list[np.ndarray], **codecs: object) -> AnnotatedVideo:
    video = AnnotatedVideo(path, 10.0, pictures[0].shape[:2], **codecs)
    for picture in pictures:
        video.write(Image.fromarray(picture))
    video.close()
    return video


def read_back(path: Path) -> tuple[str, int, int, list[np.ndarray]]:
    """The fourcc OpenCV reads in ``path``, its frame width and height, and its frames (RGB)."""
    capture = cv2.VideoCapture(str(path))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    got = []
    while (ok_frame := capture.read())[0]:
        got.append(cv2.cvtColor(ok_frame[1], cv2.COLOR_BGR2RGB))
    capture.release()
    return fourcc, *size, got


def test_the_default_is_the_first_codec_that_can_be_written(tmp_path, capfd) -> None:
    pictures = frames(64, 48)
    video = write(tmp_path / "v.mp4", pictures)
    fourcc, width, height, got = read_back(tmp_path / "v.mp4")
    assert fourcc in READ_BACK[video.codec]
    assert video.codec == ("avc1" if PYAV or fourcc in READ_BACK["avc1"] else "mp4v")
    assert video.codec_name == f"{VIDEO_CODECS[video.codec]} ({video.codec})"
    assert (width, height, len(got)) == (64, 48, 5)
    assert np.abs(got[2].astype(int) - pictures[2]).mean() < 8  # lossy, but the same picture
    # The encoders that could not open (H.264 in the opencv-python wheels) say nothing.
    assert capfd.readouterr().err == ""


def test_mpeg4_when_asked(tmp_path) -> None:
    video = write(tmp_path / "v.mp4", frames(64, 48), codecs=["mp4v"])
    assert video.codec == "mp4v"
    assert read_back(tmp_path / "v.mp4")[0] in READ_BACK["mp4v"]


@pytest.mark.skipif(not PYAV, reason="PyAV is not installed")
def test_h264_through_pyav_pads_an_odd_size(tmp_path) -> None:
    pictures = frames(65, 49)
    video = write(tmp_path / "v.mp4", pictures, codecs=["avc1"])
    fourcc, width, height, got = read_back(tmp_path / "v.mp4")
    assert (video.codec, width, height, len(got)) == ("avc1", 66, 50, 5)
    assert fourcc in READ_BACK["avc1"]
    assert np.abs(got[2][:49, :65].astype(int) - pictures[2]).mean() < 8


def test_no_codec_that_can_be_written_is_an_error(tmp_path) -> None:
    with pytest.raises(YoloError, match=r"v\.mp4: cannot write a 64x48 video there \(in no "):
        AnnotatedVideo(tmp_path / "v.mp4", 10.0, (48, 64), codecs=[])


def test_detect_says_the_codec_that_its_video_has(tmp_path, capsys) -> None:
    from yolov3.cli.main import main

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for frame in frames(64, 48):
        writer.write(frame)
    writer.release()
    (tmp_path / "micro.cfg").write_text(MICRO3_CFG)
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    out = tmp_path / "out"
    assert main(["detect", str(clip), "--model", str(tmp_path / "micro.cfg"), "--weights",
                 "none", "--names", str(tmp_path / "names.txt"), "--img-size", "64",
                 "--out", str(out)]) == 0
    said = re.search(rf"{re.escape(str(clip))}: 5 frames, \d+ detections -> "
                     rf"{re.escape(str(out / 'clip.mp4'))} \((.+) \((\w+)\)\)",
                     capsys.readouterr().out)
    assert said is not None
    name, codec = said.groups()
    assert VIDEO_CODECS[codec] == name
    assert read_back(out / "clip.mp4")[0] in READ_BACK[codec]
