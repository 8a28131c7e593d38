"""What ``yolov3 detect`` is pointed at, as images and videos: files, folders, glob patterns,
image and video URLs, live streams and webcams.

Each string of the command line is read as:

* a URL (``scheme://...``, kept as written): ``rtsp``, ``rtsps``, ``rtmp``, ``rtmps``,
  ``srt``, ``udp`` and ``tcp`` are live streams; ``http(s)`` is a video when its path ends in a
  video extension (:data:`VIDEO_EXTENSIONS`, or a playlist: ``.m3u8``, ``.mpd``), an image when
  it ends in an image extension (downloaded), else whatever the server's ``Content-Type`` says
  (``image/*``: an image; ``video/*``, ``multipart/x-mixed-replace`` (MJPEG), an HLS or DASH
  playlist: a stream; anything else is an error naming the URL);
* a whole number that is not a file: a webcam index;
* a folder: the image files under it (recursively, into linked folders too);
* a file: a video when its extension is a video's, else an image;
* a glob pattern (``*``, ``?``, ``[...]``; ``**`` for any depth): the image and video files it
  matches.

A missing path, or a pattern that matches nothing, is a :class:`DataError` before anything runs;
a URL that cannot be fetched is one failure message, and the other sources still run.
"""

from __future__ import annotations

import glob
import http.client
import io
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from yolov3.errors import DataError
from yolov3.fileio import expand_home
from yolov3.images import image_extensions, is_image_file, list_images, load_image

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                              ".wmv", ".flv", ".ts", ".3gp"})
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp"})
_PLAYLISTS = frozenset({".m3u8", ".mpd"})
_STREAM_TYPES = ("video/", "multipart/x-mixed-replace", "application/vnd.apple.mpegurl",
                 "application/x-mpegurl", "application/dash+xml")
_GLOB_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class ImageSource:
    """One image to detect on. ``name`` is how the records name it (the path as found, or the
    URL as written); the pixels are the local file ``path``, or the bytes ``data`` downloaded
    from the URL."""

    name: str
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        """The file name without extension (of the URL's path for a download)."""
        return (self.path or _url_path(self.name)).stem or "image"

    @property
    def suffix(self) -> str:
        return (self.path or _url_path(self.name)).suffix

    def read(self) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB (:func:`load_image`); a :class:`DataError` naming
        it when it is not a readable image."""
        if self.path is not None:
            return load_image(self.path)
        try:
            return load_image(io.BytesIO(self.data or b""))
        except DataError as exc:  # its message names the in-memory file: name the URL
            raise DataError(f"{self.name}: {str(exc).partition(': ')[2]}") from None


class ImageSources(Sequence[np.ndarray]):
    """The pixels of image sources, read on access (a :class:`DataError` for one that is not
    a readable image): what :func:`~yolov3.inference.batching.letterboxed_batches` takes."""

    def __init__(self, sources: Sequence[ImageSource]) -> None:
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.sources[i].read()


@dataclass(frozen=True)
class VideoSource:
    """A video file, a video or stream URL, or a webcam. ``name`` is how the records name it;
    ``target`` is what OpenCV's ``VideoCapture`` opens (a path or URL, or a webcam index)."""

    name: str
    target: str | int

    @property
    def stem(self) -> str:
        """A file name for its outputs: the file's or the URL's, ``webcamN`` for a webcam."""
        if isinstance(self.target, int):
            return f"webcam{self.target}"
        return (_url_path(self.name) if is_url(self.name) else Path(self.name)).stem or "stream"


@dataclass
class Sources:
    """What the command line names: ``images`` and ``videos`` in order, ``failures`` (one
    message per URL that could not be fetched or is neither an image nor a video), and
    ``earlier``, how many files of the named folders were left out because they lie under the
    output folder (an earlier run's results)."""

    images: list[ImageSource] = field(default_factory=list)
    videos: list[VideoSource] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    earlier: int = 0

    def __len__(self) -> int:
        """How many sources there are, failed ones included."""
        return len(self.images) + len(self.videos) + len(self.failures)

    def stems(self) -> tuple[list[str], list[str]]:
        """A distinct file stem for the outputs of each image and each video: its own, with
        ``_1``, ``_2``, ... where taken. A video's frames are labelled ``STEM_FRAME``, so no
        image stem begins with a video's stem and ``_``."""
        used: set[str] = set()
        images = [_unique(s.stem, used, lambda t: t in used) for s in self.images]
        videos = [_unique(s.stem, used, lambda t: any(u == t or u.startswith(t + "_")
                                                      for u in used))
                  for s in self.videos]
        return images, videos


def _unique(stem: str, used: set[str], taken: Callable[[str], bool]) -> str:
    name, k = stem, 1
    while taken(name):
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def is_url(text: str) -> bool:
    """Whether ``text`` is a URL (``scheme://...``) rather than a path."""
    return "://" in text and bool(urlsplit(text).scheme)


def is_video_file(path: Path) -> bool:
    """Whether ``path`` has a video extension (any case)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def gather_sources(raw: Sequence[str], out: Path, timeout: float = 10.0) -> Sources:
    """The images and videos that ``raw`` (command-line strings) name, read as the module
    docstring says; image URLs are downloaded here, waiting ``timeout`` seconds at most. Files
    under ``out`` found by walking a folder that holds ``out`` are left out (counted in
    ``earlier``)."""
    out = out.resolve()
    sources = Sources()
    for text in raw:
        if is_url(text):
            _add_url(sources, text, timeout)
            continue
        path = expand_home(text)
        if text.isdigit() and not path.exists():
            sources.videos.append(VideoSource(f"webcam {text}", int(text)))
        elif path.is_dir():
            images = list_images(path)
            within = path.resolve() in out.parents  # out lies in it: leave out's files out
            kept = [f for f in images if not (within and _under(f, out))]
            sources.earlier += len(images) - len(kept)
            sources.images += [ImageSource(str(f), f) for f in kept]
        elif path.is_file():
            _add_file(sources, path)
        elif _GLOB_MAGIC & set(text):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            files = [m for m in matches if (is_image_file(m) or is_video_file(m)) and m.is_file()]
            if not files:
                raise DataError(f"{text}: no image or video file matches this pattern")
            for f in files:
                _add_file(sources, f)
        else:
            raise DataError(f"{text}: no such file or folder")
    return sources


def _under(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (resolved; a link found in it counts as in it)."""
    parent = path.parent.resolve()
    return parent == folder or folder in parent.parents


def _add_file(sources: Sources, path: Path) -> None:
    if is_video_file(path):
        sources.videos.append(VideoSource(str(path), str(path)))
    else:
        sources.images.append(ImageSource(str(path), path))


def _url_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def _add_url(sources: Sources, url: str, timeout: float) -> None:
    """An image, a video or a failure, as the module docstring says."""
    scheme, suffix = urlsplit(url).scheme.lower(), _url_path(url).suffix.lower()
    if scheme in STREAM_SCHEMES or (scheme in ("http", "https")
                                    and suffix in VIDEO_EXTENSIONS | _PLAYLISTS):
        sources.videos.append(VideoSource(url, url))
        return
    if scheme not in ("http", "https"):
        known = ", ".join(sorted(STREAM_SCHEMES | {"http", "https"}))
        sources.failures.append(f"{url}: unknown URL scheme '{scheme}' (known: {known})")
        return
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            if suffix not in image_extensions():
                if kind.startswith(_STREAM_TYPES):
                    sources.videos.append(VideoSource(url, url))
                    return
                if not kind.startswith("image/"):
                    sources.failures.append(f"{url}: neither an image nor a video (the server "
                                            f"says Content-Type {kind})")
                    return
            data = response.read()
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
        sources.failures.append(f"{url}: cannot download it ({_reason(exc, timeout)})")
        return
    sources.images.append(ImageSource(url, data=data))


def _reason(exc: BaseException, timeout: float) -> str:
    """Why a download failed, in a few words."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)
