"""``yolov3 detect`` on what users point it at: videos (annotated video, records per frame,
--vid-stride), image and video URLs from a local HTTP server, unreachable URLs, glob patterns
and webcam indices. Real photos in a real video, the official yolov3-tiny weights."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import sigint_as_ctrl_c
from yolov3.cli.main import main
from yolov3.errors import DataError
from yolov3.inference.sources import gather_sources

SIZE = (608, 400)  # width, height of the test video's frames
SHOWN = ["cup", "motorbike", "cup", "motorbike", "cup", "motorbike"]  # frame k shows SHOWN[k]
FPS = 5.0


def frame_of(photos: dict[str, Path], name: str) -> np.ndarray:
    photo = {"cup": "coffee", "motorbike": "motorcycle_left"}[name]
    return np.asarray(Image.open(photos[photo]).convert("RGB").resize(SIZE))


def write_video(path: Path, frames: list[np.ndarray], fourcc: str, fps: float = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    frames = []
    while (got := capture.read())[0]:
        frames.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


@pytest.fixture(scope="module")
def clip(photos, tmp_path_factory) -> Path:
    """Six frames at 5 frames/s, a cup and a motorbike in turn (Motion-JPEG in AVI)."""
    folder = tmp_path_factory.mktemp("clip")
    return write_video(folder / "clip.avi", [frame_of(photos, n) for n in SHOWN], "MJPG")


def tiny(*args: object) -> list[str]:
    return [*map(str, args), "--weights", "yolov3-tiny"]


def best_per_frame(records: list[dict]) -> dict[int, dict]:
    best: dict[int, dict] = {}
    for r in records:
        if r["score"] > best.get(r["frame"], {}).get("score", 0):
            best[r["frame"]] = r
    return best


def test_video_every_frame_annotated_and_recorded(clip, tiny_weights, tmp_path,
                                                  capsys) -> None:
    out = tmp_path / "out"
    assert main(["detect", *tiny(clip), "--batch-size", "4", "--out", str(out)]) == 0
    frames, fps = read_video(out / "clip.mp4")
    originals, _ = read_video(clip)
    assert len(frames) == len(SHOWN) and fps == pytest.approx(FPS)
    assert all(f.shape == (SIZE[1], SIZE[0], 3) for f in frames)
    for frame, original in zip(frames, originals, strict=True):  # boxes drawn on each frame
        assert np.abs(frame.astype(int) - original).max() > 100
    records = json.loads((out / "detections.json").read_text())
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert records == lines
    best = best_per_frame(records)
    assert [best[k]["category_name"] for k in range(len(SHOWN))] == SHOWN
    assert all(r["file_name"] == str(clip) for r in records)
    assert all(r["time_s"] == pytest.approx(r["frame"] / FPS) for r in records)
    assert list(records[0])[:3] == ["file_name", "frame", "time_s"]
    printed = capsys.readouterr().out
    assert f"{clip}: 6 frames, {len(records)} detections -> {out / 'clip.mp4'}" in printed


def test_vid_stride_takes_every_nth_frame_and_nosave_writes_no_video(
        clip, tiny_weights, tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["detect", *tiny(clip), "--vid-stride", "2", "--out", str(out)]) == 0
    frames, fps = read_video(out / "clip.mp4")
    assert len(frames) == 3 and fps == pytest.approx(FPS / 2)  # the clip lasts as long
    records = json.loads((out / "detections.json").read_text())
    best = best_per_frame(records)
    assert sorted(best) == [0, 2, 4]
    assert all(best[k]["category_name"] == SHOWN[k] for k in best)
    quiet = tmp_path / "quiet"
    assert main(["detect", *tiny(clip), "--vid-stride", "3", "--nosave", "--out",
                 str(quiet)]) == 0
    assert sorted(p.name for p in quiet.iterdir()) == ["detections.json", "detections.jsonl"]
    assert sorted(best_per_frame(json.loads((quiet / "detections.json").read_text()))) == [0, 3]


def test_video_frames_get_a_label_file_each(clip, tiny_weights, tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["detect", *tiny(clip), "--vid-stride", "2", "--save-txt", "--nosave", "--out",
                 str(out)]) == 0
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels == ["clip_000000.txt", "clip_000002.txt", "clip_000004.txt"]
    records = json.loads((out / "detections.json").read_text())
    for name in labels:
        frame = int(name[5:11])
        rows = np.loadtxt(out / "labels" / name, ndmin=2)
        mine = [r for r in records if r["frame"] == frame]
        assert len(rows) == len(mine)
        best = rows[0]
        x, y, w, h = mine[0]["bbox"]
        expected = [(x + w / 2) / SIZE[0], (y + h / 2) / SIZE[1], w / SIZE[0], h / SIZE[1]]
        assert best[0] == mine[0]["category_id"]
        np.testing.assert_allclose(best[1:], expected, atol=1e-4)
    assert not list((out / "images").iterdir())  # frames have no image in the dataset


ROUTES = {"/photo": ("coffee.png", "image/png"), "/live": ("clip.avi", "video/x-msvideo"),
          "/page": ("page.html", "text/html")}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of a folder, and three paths without extension: /photo (image/png), /live
    (video/x-msvideo: the clip), /page (text/html)."""

    def do_GET(self) -> None:
        if self.path not in ROUTES:
            return super().do_GET()
        name, kind = ROUTES[self.path]
        body = (Path(self.directory) / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return None

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(photos, clip, tmp_path_factory) -> Iterator[str]:
    """http://127.0.0.1:PORT serving coffee.png, clip.avi and the extension-less paths."""
    folder = tmp_path_factory.mktemp("served")
    shutil.copy(photos["coffee"], folder / "coffee.png")
    shutil.copy(clip, folder / "clip.avi")
    (folder / "page.html").write_text("<html>not a picture</html>")
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


def test_image_and_video_urls_and_an_unreachable_one(server, photos, tiny_weights, tmp_path,
                                                     capsys) -> None:
    out = tmp_path / "out"
    image_url, video_url = f"{server}/coffee.png", f"{server}/clip.avi"
    dead = "http://127.0.0.1:1/x.jpg"
    code = main(["detect", *tiny(image_url, dead, video_url, photos["motorcycle_left"]),
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1  # one source failed
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert errors == [f"yolov3 detect: error: {dead}: cannot download it (Connection refused)"]
    assert "1 of the 4 sources failed" in captured.out
    records = json.loads((out / "detections.json").read_text())
    by_file: dict[str, list[dict]] = {}
    for r in records:
        by_file.setdefault(r["file_name"], []).append(r)
    assert set(by_file) == {image_url, video_url, str(photos["motorcycle_left"])}  # // intact
    assert max(by_file[image_url], key=lambda r: r["score"])["category_name"] == "cup"
    best = best_per_frame(by_file[video_url])
    assert [best[k]["category_name"] for k in range(len(SHOWN))] == SHOWN
    assert (out / "coffee.png").is_file() and len(read_video(out / "clip.mp4")[0]) == 6


def test_url_kind_from_content_type(server, tmp_path) -> None:
    found = gather_sources([f"{server}/photo", f"{server}/live", f"{server}/page",
                            f"{server}/missing.jpg", "ftp://example.com/a.jpg"], tmp_path)
    assert [s.name for s in found.images] == [f"{server}/photo"]
    assert found.images[0].read().shape == (400, 600, 3)  # the coffee photo's pixels
    assert [(s.name, s.target) for s in found.videos] == [(f"{server}/live",) * 2]
    assert found.failures == [
        f"{server}/page: neither an image nor a video (the server says Content-Type text/html)",
        f"{server}/missing.jpg: cannot download it (HTTP 404 File not found)",
        "ftp://example.com/a.jpg: unknown URL scheme 'ftp' (known: http, https, rtmp, rtmps, "
        "rtsp, rtsps, srt, tcp, udp)",
    ]
    streams = gather_sources(["rtsp://127.0.0.1:1/cam", "https://127.0.0.1:1/a/live.m3u8"],
                             tmp_path)  # not contacted: OpenCV opens them
    assert [s.target for s in streams.videos] == ["rtsp://127.0.0.1:1/cam",
                                                  "https://127.0.0.1:1/a/live.m3u8"]
    assert [s.stem for s in streams.videos] == ["cam", "live"]


def test_a_server_that_does_not_answer_is_a_timeout(tmp_path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.jpg"
        started = time.monotonic()
        found = gather_sources([url], tmp_path, timeout=0.3)
    assert time.monotonic() - started < 5
    assert found.failures == [f"{url}: cannot download it (no answer within 0.3 s)"]


def test_a_url_that_is_no_image_is_one_error(server, tiny_weights, tmp_path, capsys) -> None:
    assert main(["detect", *tiny(f"{server}/page"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"yolov3 detect: error: {server}/page: neither an image nor a video "
                           "(the server says Content-Type text/html)")


def test_globs_select_image_and_video_files(photos, clip, tmp_path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for path in ("a/one.png", "a/two.JPG", "a/deep/three.png", "a/notes.txt"):
        shutil.copy(photos["coffee"], tmp_path / path)
    shutil.copy(clip, tmp_path / "a" / "deep" / "clip.avi")
    flat = gather_sources([str(tmp_path / "a" / "*.png")], tmp_path / "out")
    assert [s.path.name for s in flat.images] == ["one.png"] and not flat.videos
    deep = gather_sources([str(tmp_path / "a" / "**" / "*")], tmp_path / "out")
    assert [s.path.relative_to(tmp_path).as_posix() for s in deep.images] == [
        "a/deep/three.png", "a/one.png", "a/two.JPG"]
    assert [s.name for s in deep.videos] == [str(tmp_path / "a" / "deep" / "clip.avi")]
    with pytest.raises(DataError, match=r"/a/\*\.bmp: no image or video file matches"):
        gather_sources([str(tmp_path / "a" / "*.bmp")], tmp_path / "out")


def test_glob_on_the_command_line(photos, tiny_weights, tmp_path) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(photos["coffee"], tmp_path / "in" / "cup.png")
    shutil.copy(photos["motorcycle_left"], tmp_path / "in" / "bike.png")
    out = tmp_path / "out"
    assert main(["detect", *tiny(tmp_path / "in" / "c*.png"), "--out", str(out)]) == 0
    records = json.loads((out / "detections.json").read_text())
    assert {r["file_name"] for r in records} == {str(tmp_path / "in" / "cup.png")}


def test_webcam_index_and_a_camera_that_is_not_there(photos, tiny_weights, tmp_path,
                                                     capsys) -> None:
    found = gather_sources(["0", "7"], tmp_path)
    assert [(s.name, s.target, s.stem) for s in found.videos] == [
        ("webcam 0", 0, "webcam0"), ("webcam 7", 7, "webcam7")]
    code = main(["detect", *tiny(photos["coffee"], 99), "--out", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "yolov3 detect: error: webcam 99: cannot open it as a video" in err
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert {r["category_name"] for r in records} >= {"cup"}  # the photo was still done


def test_same_stems_get_distinct_outputs(photos, clip, tmp_path) -> None:
    for name in ("clip.png", "clip_000001.png"):
        shutil.copy(photos["coffee"], tmp_path / name)
    shutil.copy(clip, tmp_path / "clip.mp4")
    found = gather_sources([str(tmp_path / "clip.png"), str(tmp_path / "clip_000001.png"),
                            str(clip), str(tmp_path / "clip.mp4")], tmp_path / "out")
    images, videos = found.stems()
    assert images == ["clip", "clip_000001"]
    assert videos == ["clip_1", "clip_2"]  # no frame label clip_000001.txt over the image's


@pytest.mark.slow
def test_ctrl_c_in_a_video_keeps_a_playable_video(photos, tiny_weights, tmp_path) -> None:
    """A real SIGINT once the first frame's records are on disk."""
    long = write_video(tmp_path / "long.avi", [frame_of(photos, "cup")] * 200, "MJPG")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "yolov3", "detect", str(long), "--weights", str(tiny_weights),
         "--model", "yolov3-tiny", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        preexec_fn=sigint_as_ctrl_c)
    lines = out / "detections.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (lines.is_file() and lines.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no detections after 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("yolov3 detect: interrupted after ") and " video frames;" in last
    done = int(last.split("interrupted after ")[1].split()[0])
    assert 1 <= done < 200
    records = json.loads((out / "detections.json").read_text())
    assert {r["frame"] for r in records} == set(range(done))
    frames, _ = read_video(out / "long.mp4")  # finished: its frames are readable
    assert len(frames) >= done
