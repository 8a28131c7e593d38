"""Label caches: what a dataset's label and annotation files parse to, kept between runs so that
a large dataset opens in seconds.

A cache file is ``$XDG_CACHE_HOME/yolov3/labels/KIND-HASH.npz`` (``~/.cache`` without the
variable), HASH naming what it covers (a split of a dataset, an annotations folder, an image
folder). It never lives inside a dataset: opening one writes nothing there (``yolov3 data
convert`` checks that no file of its source changes). It is a numpy ``.npz`` archive read with
``allow_pickle=False``: numbers, and strings stored as UTF-8 bytes with their lengths.

An entry is trusted when the file it was read from has the size, modification time and change
time (``st_ctime``, which no tool can set back, so that a file rewritten with its old size and
``mtime`` restored is still seen) it had when the cache was written, and those times are older
than the moment the cache's reading began by :data:`RACY_NS` (a file changed again within the
file system's clock granularity after it was read would look unchanged: such entries are read
again, as git treats its "racy" index entries). Other entries are read again and the cache
rewritten: a changed, added or removed file costs the parsing of that file alone. Folders are
keyed by device, inode, modification and change time: a file added, removed or renamed in a
folder changes that folder's times.

A cache that cannot be read (damaged, from another version of this code) is ignored and
replaced; one that cannot be written (a read-only cache folder) leaves the dataset opening as
without a cache, said once in the log. Caches unused for :data:`PRUNE_DAYS` are deleted when a
new one is written. Datasets under :data:`MIN_IMAGES` images are not cached: they open in a
fraction of a second anyway.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolov3.errors import YoloError
from yolov3.fileio import atomic_write
from yolov3.images import list_images

log = logging.getLogger("yolov3")

#: The layout of the cache files; the parsers' source code is part of every key as well.
VERSION = 1
#: Datasets (and image folders) with fewer images are not cached.
MIN_IMAGES = 1000
#: A file changed this close to (or after) the start of the reading that cached it is read
#: again: 2 s covers coarse file system clocks (FAT's 2 s modification times).
RACY_NS = 2_000_000_000
#: Cache files not used for this many days are deleted when another is written.
PRUNE_DAYS = 60

_MISSING = -1
_warned: set[str] = set()  # cache folders whose write failure is in the log already
_SOURCES = ("base.py", "boxes.py", "cache.py", "coco.py", "problems.py", "voc.py",
            "yolo_txt.py", "../images.py", "../classes.py")


def cache_folder() -> Path | None:
    """``$XDG_CACHE_HOME/yolov3/labels``, else ``~/.cache/yolov3/labels``; None without a home
    folder."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:
            return None
    return Path(base) / "yolov3" / "labels"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A digest of the code that parses datasets: caches written by other code are ignored."""
    h = hashlib.sha256(str(VERSION).encode())
    here = Path(__file__).parent
    for name in _SOURCES:
        try:
            h.update((here / name).read_bytes())
        except OSError:
            h.update(name.encode())
    return h.hexdigest()[:16]


# --- strings and file keys ------------------------------------------------------------------

def put_strings(arrays: dict[str, np.ndarray], name: str, strings: Sequence[str]) -> None:
    """Store ``strings`` as ``name.text`` (UTF-8 bytes; any surrogate a file name decoded to
    kept) and ``name.len`` (their lengths in characters)."""
    text = "".join(strings).encode("utf-8", "surrogatepass")
    arrays[f"{name}.text"] = np.frombuffer(text, np.uint8)
    arrays[f"{name}.len"] = np.fromiter(map(len, strings), np.int64, len(strings))


def get_strings(arrays: dict[str, np.ndarray], name: str) -> list[str]:
    """The strings :func:`put_strings` stored; ValueError when the two arrays disagree."""
    text = arrays[f"{name}.text"].tobytes().decode("utf-8", "surrogatepass")
    lengths = arrays[f"{name}.len"]
    if lengths.ndim != 1 or (lengths < 0).any() or int(lengths.sum()) != len(text):
        raise ValueError(f"{name}: the lengths do not add up to the text")
    ends = np.cumsum(lengths).tolist()
    return [text[a:b] for a, b in zip([0, *ends], ends, strict=False)]


def file_keys(paths: Iterable[str]) -> np.ndarray:
    """(n, 3) int64: size, modification and change time (ns) of each file; -1s where missing."""
    rows = []
    for path in paths:
        try:
            s = os.stat(path)
        except (OSError, ValueError):
            rows.append((_MISSING, _MISSING, _MISSING))
        else:
            rows.append((s.st_size, s.st_mtime_ns, s.st_ctime_ns))
    return np.array(rows, np.int64).reshape(-1, 3)


def folder_keys(paths: Iterable[str]) -> np.ndarray:
    """(n, 4) int64: device, inode, modification and change time (ns) of each folder."""
    rows = []
    for path in paths:
        try:
            s = os.stat(path)
        except (OSError, ValueError):
            rows.append((_MISSING,) * 4)
        else:
            rows.append((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_ctime_ns))
    return np.array(rows, np.int64).reshape(-1, 4)


def unchanged(old: np.ndarray, new: np.ndarray, stamp: int) -> np.ndarray:
    """Per row: the key is the cached one, and its times (the last two columns) are older than
    the cache's ``stamp`` by :data:`RACY_NS` (see the module's notes)."""
    if old.shape != new.shape:
        raise ValueError("the keys have another shape")
    return (old == new).all(axis=1) & (new[:, -2:].max(axis=1, initial=_MISSING)
                                       < stamp - RACY_NS)


# --- cache files ----------------------------------------------------------------------------

class CacheFile:
    """The cache file of ``kind`` for ``ident`` (an absolute path and what else tells it apart),
    valid for ``params`` (what else the parse depends on, as JSON). ``stamp`` is taken when it
    is made: make it before looking at the files it covers."""

    def __init__(self, kind: str, ident: str, params: dict[str, Any] | None = None) -> None:
        self.stamp = time.time_ns()
        self.kind, self.ident = kind, ident
        self.params = json.loads(json.dumps(params or {}))  # as it reads back
        folder = cache_folder()
        digest = hashlib.sha256(f"{kind}\0{ident}".encode("utf-8", "surrogatepass"))
        self.path = None if folder is None else folder / f"{kind}-{digest.hexdigest()[:24]}.npz"
        self.loaded_stamp = 0  # the stamp of the cache read, when one was

    def load(self) -> dict[str, np.ndarray] | None:
        """The arrays of the cache file when there is a usable one, else None."""
        if self.path is None:
            return None
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
            meta = json.loads(str(arrays.pop("meta")[()]))
            if (meta.get("code") != code_version() or meta.get("kind") != self.kind
                    or meta.get("ident") != self.ident or meta.get("params") != self.params):
                return None
            self.loaded_stamp = int(meta["stamp"])
        except FileNotFoundError:
            return None
        except Exception as exc:  # damaged in any way: ignored, and replaced when rewritten
            log.debug("ignoring the label cache %s (%s: %s)", self.path, type(exc).__name__, exc)
            return None
        with contextlib.suppress(OSError):
            os.utime(self.path)  # used: not pruned
        return arrays

    def save(self, arrays: dict[str, np.ndarray], count: int) -> bool:
        """Write the cache (atomically) of a dataset of ``count`` images, when that is
        :data:`MIN_IMAGES` or more; False when it is not written (said once in the log when it
        cannot be)."""
        if self.path is None or count < MIN_IMAGES:
            return False
        meta = {"code": code_version(), "kind": self.kind, "ident": self.ident,
                "params": self.params, "stamp": self.stamp}
        try:
            with atomic_write(self.path) as f:
                np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
        except (OSError, YoloError) as exc:
            folder = str(self.path.parent)
            if folder not in _warned:
                _warned.add(folder)
                log.warning("cannot write the label cache in %s (%s); datasets open without "
                            "it (set XDG_CACHE_HOME to a writable folder to keep one)",
                            folder, getattr(exc, "strerror", None) or exc)
            return False
        _prune(self.path.parent, keep=self.path)
        return True


def _prune(folder: Path, keep: Path) -> None:
    """Delete the cache files of ``folder`` unused for :data:`PRUNE_DAYS`."""
    limit = time.time() - PRUNE_DAYS * 86400
    try:
        for entry in os.scandir(folder):
            if entry.name.endswith(".npz") and entry.path != str(keep):
                try:
                    if entry.stat().st_mtime < limit:
                        os.unlink(entry.path)
                except OSError:
                    pass
    except OSError:
        pass


# --- per-entry results ----------------------------------------------------------------------

Column = np.ndarray | list[str]


def _take(column: Column, index: np.ndarray) -> Column:
    if isinstance(column, np.ndarray):
        return column[index]
    return [column[i] for i in index.tolist()]


def _cat(columns: list[Column]) -> Column:
    if isinstance(columns[0], np.ndarray):
        return np.concatenate(columns)
    return [s for c in columns for s in c]


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indices ``starts[0]..starts[0]+counts[0]-1``, then those of the next range, ..."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    first = np.cumsum(counts) - counts  # where each range begins in the output
    return np.arange(total, dtype=np.int64) + np.repeat(np.asarray(starts, np.int64) - first,
                                                         counts)


@dataclass
class Entries:
    """Results per entry (a label or annotation file), packed. Entry ``i`` owns rows
    ``offsets[i]:offsets[i + 1]`` of every column of ``rows`` (its boxes); ``fields`` hold one
    value per entry; ``problems`` are (entry, message, kind) and ``notes`` (entry, kind,
    message), in entry order. Columns are numpy arrays or lists of strings."""

    offsets: np.ndarray
    fields: dict[str, Column] = field(default_factory=dict)
    rows: dict[str, Column] = field(default_factory=dict)
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    notes: list[tuple[int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, index: np.ndarray) -> Entries:
        """The entries ``index`` (in that order; repeats allowed)."""
        index = np.asarray(index, np.int64)
        counts = self.counts[index]
        rows = ranges(self.offsets[:-1][index], counts)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        problems: list[tuple[int, str, str]] = []
        notes: list[tuple[int, str, str]] = []
        for found, out in ((self.problems, problems), (self.notes, notes)):
            if not found:
                continue
            by_entry: dict[int, list[tuple[str, str]]] = {}
            for owner, a, b in found:
                by_entry.setdefault(owner, []).append((a, b))
            for j, i in enumerate(index.tolist()):
                out.extend((j, a, b) for a, b in by_entry.get(i, ()))
        return Entries(offsets, {k: _take(v, index) for k, v in self.fields.items()},
                       {k: _take(v, rows) for k, v in self.rows.items()}, problems, notes)

    @staticmethod
    def concat(parts: Sequence[Entries]) -> Entries:
        """The entries of ``parts`` one after the other (all with the same columns)."""
        parts = [p for p in parts if len(p)] or list(parts[:1])
        if len(parts) == 1:
            return parts[0]
        shift = np.cumsum([0] + [len(p) for p in parts[:-1]])
        row_shift = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + r for p, r in zip(parts, row_shift,
                                                                            strict=True)])
        return Entries(
            offsets.astype(np.int64),
            {k: _cat([p.fields[k] for p in parts]) for k in parts[0].fields},
            {k: _cat([p.rows[k] for p in parts]) for k in parts[0].rows},
            [(o + int(s), a, b) for p, s in zip(parts, shift, strict=True)
             for o, a, b in p.problems],
            [(o + int(s), a, b) for p, s in zip(parts, shift, strict=True)
             for o, a, b in p.notes],
        )

    def save_into(self, arrays: dict[str, np.ndarray]) -> None:
        arrays["offsets"] = self.offsets
        for prefix, columns in (("field", self.fields), ("row", self.rows)):
            for name, column in columns.items():
                if isinstance(column, np.ndarray):
                    arrays[f"{prefix}.{name}"] = column
                else:
                    put_strings(arrays, f"{prefix}s.{name}", column)
        for name, found in (("problems", self.problems), ("notes", self.notes)):
            arrays[f"{name}.owner"] = np.array([o for o, _, _ in found], np.int64)
            put_strings(arrays, f"{name}.a", [a for _, a, _ in found])
            put_strings(arrays, f"{name}.b", [b for _, _, b in found])

    @staticmethod
    def load_from(arrays: dict[str, np.ndarray], fields: Sequence[str],
                  rows: Sequence[str]) -> Entries:
        """What :meth:`save_into` stored, with the named columns; ValueError (or KeyError) when
        it does not hold together."""
        offsets = arrays["offsets"].astype(np.int64)
        n = len(offsets) - 1
        if offsets.ndim != 1 or n < 0 or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError("bad offsets")

        def column(prefix: str, name: str, size: int) -> Column:
            if f"{prefix}.{name}" in arrays:
                value: Column = arrays[f"{prefix}.{name}"]
            else:
                value = get_strings(arrays, f"{prefix}s.{name}")
            if len(value) != size:
                raise ValueError(f"{name}: {len(value)} values for {size}")
            return value

        entries = Entries(offsets, {k: column("field", k, n) for k in fields},
                          {k: column("row", k, int(offsets[-1])) for k in rows})
        for name in ("problems", "notes"):
            owner = arrays[f"{name}.owner"]
            a, b = get_strings(arrays, f"{name}.a"), get_strings(arrays, f"{name}.b")
            if not len(owner) == len(a) == len(b) or ((owner < 0) | (owner >= n)).any():
                raise ValueError(f"bad {name}")
            setattr(entries, name, list(zip(owner.tolist(), a, b, strict=True)))
        return entries


def reuse_or_parse(
    cache: CacheFile,
    files: list[str],
    keys: np.ndarray,
    parse: Callable[[list[int]], Entries],
    fields: Sequence[str],
    rows: Sequence[str],
) -> tuple[Entries, int, dict[str, np.ndarray] | None]:
    """The entries of ``files`` (whose :func:`file_keys` are ``keys``): those of the cache
    whose files are unchanged, the others from ``parse`` (given their positions in ``files``).
    Returns them, the number parsed, and the arrays to save (None when the cache is up to
    date)."""
    old = cache.load()
    reuse = np.full(len(files), -1, np.int64)
    cached, same_files = None, False
    if old is not None:
        try:
            old_files = get_strings(old, "files")
            cached = Entries.load_from(old, fields, rows)
            if len(old_files) != len(cached):
                raise ValueError("files and entries differ in number")
            same_files = old_files == files
            if same_files:
                where = np.arange(len(files), dtype=np.int64)
            else:
                position = {f: i for i, f in enumerate(old_files)}
                where = np.array([position.get(f, -1) for f in files], np.int64)
            known = where >= 0
            ok = np.zeros(len(files), bool)
            ok[known] = unchanged(old["keys"][where[known]], keys[known], cache.loaded_stamp)
            reuse[ok] = where[ok]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            log.debug("ignoring the label cache %s (%s)", cache.path, exc)
            cached, same_files = None, False
    todo = np.flatnonzero(reuse < 0)
    if cached is None or len(todo) == len(files):
        entries = parse(list(range(len(files))))
        todo = np.arange(len(files))
    elif len(todo) == 0:
        entries = cached if np.array_equal(reuse, np.arange(len(cached))) else cached.take(reuse)
    else:
        fresh = parse(todo.tolist())
        reuse[todo] = len(cached) + np.arange(len(todo))
        entries = Entries.concat([cached, fresh]).take(reuse)
    if len(todo) == 0 and same_files:
        return entries, 0, None
    arrays: dict[str, np.ndarray] = {"keys": keys}
    put_strings(arrays, "files", files)
    entries.save_into(arrays)
    return entries, len(todo), arrays


# --- folder listings ------------------------------------------------------------------------

def _walked_folders(folder: Path) -> list[str] | None:
    """``folder`` and every folder under it, when none is reached through a symbolic link and
    all can be read (so that the listing depends on their entries alone); else None."""
    found, stack = [], [os.fspath(folder)]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        return None
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            return None
    return found


def join_names(folder: Path, names: Sequence[str]) -> list[Path]:
    """``[folder / name for name in names]``, made faster for plain file names."""
    make = getattr(folder, "_make_child_relpath", None)  # what iterdir itself uses
    if make is None:  # pragma: no cover - a Python whose pathlib lacks it
        return [folder / n for n in names]
    sep, alt = os.sep, os.altsep or os.sep
    return [make(n) if n and n != "." and sep not in n and alt not in n else folder / n
            for n in names]


def listed_images(folder: Path) -> tuple[list[Path], bool]:
    """:func:`yolov3.images.list_images` of ``folder``, and whether it came from the cache
    (kept for folders of :data:`MIN_IMAGES` images or more without symbolic links under
    them: the listing is then known unchanged while no folder under it changed)."""
    cache = CacheFile("images", f"{os.path.abspath(folder)}\0{folder}")
    old = cache.load()
    if old is not None:
        try:
            walked = get_strings(old, "walked")
            if unchanged(old["walked.keys"], folder_keys(walked), cache.loaded_stamp).all():
                parents = [Path(p) for p in get_strings(old, "parents")]
                parent, names = old["parent"].tolist(), get_strings(old, "names")
                if len(parent) != len(names):
                    raise ValueError("parents and names differ in number")
                images: list[Path] = [None] * len(names)  # type: ignore[list-item]
                groups: dict[int, list[int]] = {}
                for k, p in enumerate(parent):
                    groups.setdefault(p, []).append(k)
                for p, where in groups.items():
                    for k, path in zip(where, join_names(parents[p], [names[k] for k in where]),
                                       strict=True):
                        images[k] = path
                return images, True
        except (KeyError, IndexError, ValueError) as exc:
            log.debug("ignoring the listing cache %s (%s)", cache.path, exc)
    walked_now = _walked_folders(folder)
    keys = None if walked_now is None else folder_keys(walked_now)  # before listing
    images = list_images(folder)
    if keys is not None and len(images) >= MIN_IMAGES:  # (saves the work below)
        arrays: dict[str, np.ndarray] = {"walked.keys": keys}
        put_strings(arrays, "walked", walked_now)
        index: dict[str, int] = {}
        parent_of = [index.setdefault(str(p.parent), len(index)) for p in images]
        put_strings(arrays, "parents", list(index))
        arrays["parent"] = np.array(parent_of, np.int64)
        put_strings(arrays, "names", [p.name for p in images])
        cache.save(arrays, len(images))
    return images, False


def listed_files(folder: Path, suffix: str) -> list[str]:
    """The files under ``folder`` (recursively; links to folders are not followed) whose names
    end in ``suffix``, as paths relative to it with ``/`` and without the suffix, sorted
    (``a/x`` for ``folder/a/x.xml``); from the cache while no folder under ``folder`` changed
    (its entries alone decide it)."""
    cache = CacheFile("files", f"{os.path.abspath(folder)}\0{suffix}")
    old = cache.load()
    walked = _walked_folders(folder)
    keys = None if walked is None else folder_keys(walked)
    if old is not None and keys is not None:
        try:
            if get_strings(old, "walked") == walked and unchanged(
                    old["keys"], keys, cache.loaded_stamp).all():
                return get_strings(old, "files")
        except (KeyError, ValueError) as exc:
            log.debug("ignoring the listing cache %s (%s)", cache.path, exc)
    found = sorted(p.relative_to(folder).as_posix()[: -len(suffix)]
                   for p in folder.rglob(f"*{suffix}") if p.is_file())
    if keys is not None:
        arrays: dict[str, np.ndarray] = {"keys": keys}
        put_strings(arrays, "walked", walked)
        put_strings(arrays, "files", found)
        cache.save(arrays, len(found))
    return found
