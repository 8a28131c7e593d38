"""Paths as users write them, file writing that never leaves a half-written file behind (and
says so when the disk is full), outputs that never replace inputs, and folders that one live
process at a time may write in."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from yolov3.errors import YoloError

try:  # POSIX: a lock that the kernel drops with its process (a SIGKILL leaves none behind)
    import fcntl
except ImportError:  # pragma: no cover - Windows: a lock file judged by its owner's PID
    fcntl = None  # type: ignore[assignment]


def expand_home(raw: str | Path) -> Path:
    """``raw`` with a leading ``~`` or ``~user`` made that home folder; a ``~user`` with no
    such user stays as written, so that the caller reports a path that does not exist."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:  # pathlib's "Could not determine home directory"
        return Path(raw)


# The temporary files of atomic_write: ``.NAME.XXXXXXXX.tmp`` (mkstemp's eight random
# characters), which only a process killed while writing leaves behind.
_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".tmp"
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")
# The errors of a write that the disk (or the file system) has no room for.
_NO_ROOM = {errno.ENOSPC: "no space left on the disk", errno.EDQUOT: "the disk quota is used up",
            errno.EFBIG: "the file system cannot hold a file this large"}


class DiskFullError(YoloError, OSError):
    """A file could not be written for want of room: ``folder`` is full (or over quota).
    ``written`` bytes of ``path`` had been written when it failed, ``free`` bytes are free.
    Also an :class:`OSError` with the original ``errno`` (ENOSPC, EDQUOT or EFBIG), for code
    that handles those."""

    def __init__(self, path: Path, reason: str, written: int | None,
                 message: str | None = None, code: int = errno.ENOSPC) -> None:
        self.path, self.folder, self.reason, self.written = path, path.parent, reason, written
        self.free = free_bytes(path.parent)
        done = f" after {format_bytes(written)}" if written else ""
        super().__init__(message or (
            f"{self.folder}: {reason}: writing {path.name} failed{done} ({format_bytes(self.free)}"
            f" free there); the previous {path.name}, if any, is intact. Free some space there "
            "or write to another disk"))
        self.errno = code


def free_bytes(folder: str | Path) -> int | None:
    """The bytes free for this user on the disk of ``folder`` (None when unknown)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def format_bytes(count: int | None) -> str:
    """``count`` bytes for people: ``12.3 MB``, ``1.50 GB`` (decimal units, as ``df -H``)."""
    if count is None:
        return "an unknown amount"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


def _no_room(exc: BaseException) -> OSError | None:
    """The error that says a write failed for want of room, when ``exc`` is one, or was raised
    from or while handling one (torch.save reports a failed write as a RuntimeError about zip
    positions, raised while handling the OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_ROOM:
            return current
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success it is flushed to
    disk and renamed over ``path``, so readers see the old file or the new one, never a part.

    A write that fails because the disk is full (or over quota) is a :class:`DiskFullError`
    naming the folder; the temporary file is removed and ``path`` is left as it was. A process
    killed while writing leaves the temporary file: :func:`remove_partial_writes` clears
    those."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_TEMP_PREFIX}{path.name}.",
                                   suffix=_TEMP_SUFFIX)
    except OSError as exc:
        full = _no_room(exc)
        if full is None:
            raise
        raise DiskFullError(path, _NO_ROOM[full.errno], None, code=full.errno) from exc
    written: int | None = None
    try:
        # mkstemp makes the file private (0600); give it the permissions of a normal new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            try:
                yield f
                f.flush()
                os.fsync(f.fileno())
            finally:
                written = _position(f)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = _no_room(exc)
        if full is None or isinstance(exc, DiskFullError):
            raise
        raise DiskFullError(path, _NO_ROOM[full.errno], written, code=full.errno) from exc


def _position(f: BinaryIO) -> int | None:
    try:
        return f.tell()
    except (OSError, ValueError):
        return None


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` left in ``folder`` when its process
    was killed mid-write; returns them. Call it only while no other process writes there (see
    :class:`FolderLock`)."""
    folder = Path(folder)
    try:
        found = [p for p in folder.iterdir() if _TEMP_NAME.match(p.name) and p.is_file()]
    except OSError:
        return []
    for p in found:
        p.unlink(missing_ok=True)
    return found


_NO_FLOCK = -1


class FolderInUseError(YoloError):
    """Another live process holds the lock of a folder."""


class FolderLock:
    """The claim of one live process on ``folder``: the lock file ``folder / name`` holds the
    owner's PID and host, and is locked with ``flock`` while the owner runs. The kernel drops
    the lock when the owner ends in any way (SIGKILL, a crash, a power cut), so a stale lock
    file never blocks. Where ``flock`` is missing or unsupported (some network file systems),
    the file is created exclusively instead and a file whose PID is no longer running on this
    host is stale and replaced."""

    def __init__(self, folder: str | Path, name: str = ".lock") -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def owner(self) -> str:
        """The owner as its lock file says: ``pid N on HOST`` (or why that is unknown)."""
        try:
            pid, _, host = self.path.read_text().strip().partition(" ")
        except (OSError, UnicodeDecodeError):
            return "an unknown process"
        return f"pid {pid} on {host}" if pid.isdigit() else "an unknown process"

    def acquire(self) -> None:
        """Take the lock, or raise :class:`FolderInUseError` naming its owner."""
        if self._fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        use_flock = fcntl is not None
        for _ in range(100):  # the lock file may be replaced while we look: look again
            fd = self._flocked() if use_flock else self._created()
            if fd == _NO_FLOCK:
                use_flock = False
                continue
            if fd is None:
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            self._fd = fd
            return
        raise FolderInUseError(f"{self.folder}: could not take its lock {self.path}")

    def _in_use(self) -> FolderInUseError:
        return FolderInUseError(
            f"{self.folder} is in use by another training run ({self.owner()}; lock file "
            f"{self.path}): wait for it to end or stop it, or choose another folder")

    def _flocked(self) -> int | None:
        """The lock file's descriptor, flocked; None when its owner removed the file between
        our open and our lock; ``_NO_FLOCK`` where the file system has no flock."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._in_use() from None
        except OSError:
            os.close(fd)
            return _NO_FLOCK
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return None
        return fd

    def _created(self) -> int | None:
        """A new lock file, created exclusively; None after removing a stale one (its PID no
        longer runs on this host)."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        if _alive(self.path):
            raise self._in_use()
        self.path.unlink(missing_ok=True)
        return None

    def release(self) -> None:
        """Give the lock up (and remove its file)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def __del__(self) -> None:  # a lock never released by hand goes with its object
        with contextlib.suppress(Exception):
            self.release()

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(lock_file: Path) -> bool:
    """Whether the process a lock file names still runs (a lock from another host counts as
    alive: there is no telling)."""
    try:
        pid_text, _, host = lock_file.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError, UnicodeDecodeError):
        try:  # just created, its PID not written yet: alive
            return time.time() - lock_file.stat().st_mtime < 10
        except OSError:
            return False
    if host and host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _limit(path: str | Path, name: str, default: int) -> int:
    """The file system's ``pathconf`` limit ``name`` where ``path`` (or its nearest existing
    folder) lies; ``default`` where unknown."""
    folder = os.path.abspath(os.fspath(path))
    while True:
        try:
            return os.pathconf(folder, name)
        except (OSError, ValueError, AttributeError):
            parent = os.path.dirname(folder)
            if parent == folder:
                return default
            folder = parent


def name_too_long(path: str | Path) -> str:
    """Why the file system refuses ``path`` with ENAMETOOLONG, in one line: the first name in
    it longer than the file system allows (NAME_MAX, 255 bytes on most), or the whole path
    longer than PATH_MAX."""
    text = os.fsencode(path)
    parts = text.split(os.fsencode(os.sep))
    name_max = _limit(path, "PC_NAME_MAX", 255)
    for k, part in enumerate(parts):
        if len(part) > name_max:
            head = os.fsdecode(os.fsencode(os.sep).join(parts[: k + 1]))
            inside = f" (in {os.fsdecode(text)})" if k < len(parts) - 1 else ""
            return (f"{head}: the name is {len(part)} bytes long{inside}, and the file system "
                    f"allows at most {name_max} (ENAMETOOLONG): choose a shorter name")
    path_max = _limit(path, "PC_PATH_MAX", 4096)
    return (f"{os.fsdecode(text)}: the path is {len(text)} bytes long, and the file system "
            f"allows at most {path_max} (ENAMETOOLONG): choose a shorter path")


def os_error_message(exc: OSError) -> str:
    """One line for a file system error: the path and what went wrong (for a name too long
    for the file system, :func:`name_too_long`). The command line prints it for an OSError
    that no command turned into a :class:`YoloError`."""
    if exc.errno == errno.ENAMETOOLONG and exc.filename is not None:
        return name_too_long(exc.filename)
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{exc.filename}{target}: {reason}"


def writable_dir(path: str | Path) -> Path:
    """``path`` as a folder this process can write files in, created when missing; a
    :class:`YoloError` naming it when it cannot be created or written (checked before a long
    run, not at its end)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise YoloError(name_too_long(path)) from None
        reason = "it is a file" if path.is_file() else exc.strerror or str(exc)
        raise YoloError(f"{path}: cannot write output files there ({reason}); choose another "
                        "output folder or make it writable") from None
    return path


def refuse_overwriting_inputs(outputs: Iterable[str | Path],
                              inputs: Mapping[str, str | Path | None]) -> None:
    """A :class:`YoloError` when a file a command is about to write is one of its inputs.

    ``outputs`` are the files the command writes (a command that replaces a folder passes the
    files in it); ``inputs`` the paths it reads, each by the option that names it
    (``{"--weights": "best.pt", "--model": None}``; None and names that are not existing
    paths, such as ``yolov3-tiny``, are skipped). An output is an input when both exist and
    are the same file (:func:`os.path.samefile`: the same path however written, a symbolic
    link to it, or a hard link). The message names the option and the path and says to choose
    another --out. Call it before anything is written."""
    for output in outputs:
        output = expand_home(output)
        for option, given in inputs.items():
            if given is None:
                continue
            source = expand_home(given)
            try:
                same = os.path.samefile(output, source)
            except OSError:  # one of them does not exist (or cannot be read): nothing to lose
                continue
            if same:
                spelt = os.path.abspath(output) == os.path.abspath(source)
                how = "" if spelt else " (the same file)"
                raise YoloError(f"{output} is the input {option} {given}{how}: writing it would "
                                "replace that input; choose another --out")
