"""Weights by name: cache location, verification, fallback sources, the no-network message."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from yolov3 import hub
from yolov3.errors import WeightsError


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
    assert f"Download {unreachable} by hand and put it at" in message
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
