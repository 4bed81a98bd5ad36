"""Build (path, label) indices of image trees once, and reuse them until the tree changes.

Listing ImageNet's 1.28M training files takes from seconds on a local SSD to many minutes
on a network filesystem, on every start and in every DDP process. The index is therefore
saved (``.npz``, no pickle) and reused as long as the tree's *fingerprint* is unchanged:
the modification times of the indexed directories (a directory's mtime changes whenever a
file in it is added, removed or renamed) and the content hash of the label files. Checking
the fingerprint costs one ``stat`` per class folder, reads the label files (a few MB for
ImageNet) and lists no directory.

Everything else the labels depend on (which label files, the class list, the layout, the
image extensions) is part of the cache *key*: another choice is another cache file, never a
stale one. A cache file that cannot be read (empty, truncated, not an index) is re-built.

A tree modified within the last 2 s is indexed but not cached: filesystems with coarse
timestamps could otherwise hide a change made in the same tick (git's "racy clean" problem).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from litvision.utils.atomic_write import write_atomic

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CACHE_VERSION = 2  # 2: label files content-hashed, label inputs in the key
CACHE_DIRNAME = ".litvision_index"  # the folder name to use beside the data, when asked for there
RACY_WINDOW_NS = 2_000_000_000


@dataclass
class FileIndex:
    """Images ``root/paths[i]`` (paths relative, as bytes) with labels into ``classes``."""

    root: str
    paths: np.ndarray  # dtype 'S': one buffer, no per-path Python objects
    labels: np.ndarray  # int64
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def names(self) -> list[str]:
        """Relative paths as str (for tests and messages; datasets keep the bytes)."""
        return [os.fsdecode(p) for p in self.paths]


@dataclass
class IndexSource:
    """What a scan listed, for the index's fingerprint."""

    dirs: list[str]  # directories whose listing the index reflects


def _encode(paths: Iterable[str]) -> np.ndarray:
    encoded = [os.fsencode(p) for p in paths]
    return np.array(encoded, dtype=f"S{max((len(p) for p in encoded), default=1)}")


def make_index(
    root: str | os.PathLike, paths: Sequence[str], labels: Sequence[int], classes: Sequence[str]
) -> FileIndex:
    return FileIndex(str(root), _encode(paths), np.asarray(labels, dtype=np.int64), list(classes))


def fingerprint(dirs: Sequence[str], files: list | None) -> dict | None:
    """The directories' mtimes and the label files' :func:`file_hashes`; None if something is gone."""
    if files is None:
        return None
    try:
        return {"dirs": [[d, os.stat(d).st_mtime_ns] for d in dirs], "files": files}
    except OSError:
        return None


def file_hashes(paths: Sequence[str]) -> list | None:
    """``[[path, size, sha1 of the content], ...]``; None if a file cannot be read.

    Content, not mtime: a label file replaced by another of the same size and timestamp
    (``cp -p``, a restored backup) must not serve the old labels.
    """
    out = []
    try:
        for path in paths:
            digest_ = hashlib.sha1()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest_.update(block)
            out.append([path, os.path.getsize(path), digest_.hexdigest()])
    except OSError:
        return None
    return out


def _newest_mtime(fp: dict) -> int:
    return max([d[1] for d in fp["dirs"]] + [0])


@contextlib.contextmanager
def _progress(description: str, total: int | None, enabled: bool):
    """Yield ``advance(n=1)`` for a rich progress bar (a silent one if another display is live)."""
    from rich.errors import LiveError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=not enabled
    )
    try:
        bar.start()
    except LiveError:  # e.g. called while Lightning's rich progress bar is showing
        bar = Progress(disable=True)
    task = bar.add_task(description, total=total)
    try:
        yield lambda advance=1: bar.update(task, advance=advance)
    finally:
        bar.stop()


def _has_extension(name: str, extensions: Sequence[str]) -> bool:
    return os.path.splitext(name)[1].lower() in extensions


def scan_class_folders(
    split_dir: str | os.PathLike,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    progress: bool = True,
) -> tuple[FileIndex, IndexSource]:
    """Index ``split_dir/<class>/<image>``; label = position of ``<class>`` in ``classes``.

    ``classes`` defaults to the sorted sub-folder names (hidden ones excluded), i.e. the
    usual ImageFolder convention (sorted wnids = the standard ImageNet 0-999). A sub-folder
    not in ``classes`` is an error: its images would have no label.
    """
    split_dir = os.fspath(split_dir)
    subdirs = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if classes is None:
        classes = subdirs
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = [d for d in subdirs if d not in lookup]
    if unknown:
        raise ValueError(
            f"{split_dir} has class folders that are not among the {len(classes)} training classes: "
            f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}. Remove them or fix the tree."
        )
    paths: list[str] = []
    labels: list[int] = []
    ignored = 0
    with _progress(f"Indexing {split_dir}", len(subdirs), progress) as advance:
        for name in subdirs:
            files = sorted(e.name for e in os.scandir(os.path.join(split_dir, name)) if e.is_file())
            images = [f for f in files if _has_extension(f, extensions)]
            ignored += len(files) - len(images)
            paths.extend(f"{name}/{f}" for f in images)
            labels.extend([lookup[name]] * len(images))
            advance()
    if ignored:
        log.info("%s: ignored %d files without an image extension %s", split_dir, ignored, tuple(extensions))
    if not paths:
        raise FileNotFoundError(
            f"no images under {split_dir}/<class>/ (extensions {tuple(extensions)}); expected e.g. "
            f"{split_dir}/n01440764/n01440764_10026.JPEG"
        )
    dirs = [split_dir] + [os.path.join(split_dir, d) for d in subdirs]
    return make_index(split_dir, paths, labels, classes), IndexSource(dirs)


def scan_flat_folder(
    split_dir: str | os.PathLike,
    label_of: Mapping[str, str],
    classes: Sequence[str],
    label_source: str,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    progress: bool = True,
) -> tuple[FileIndex, IndexSource]:
    """Index the images directly in ``split_dir``, labelled by file stem through ``label_of``.

    Every image must have a label and every label must be a known class: a silently
    unlabelled or mislabelled image is worse than a clear error. Labels without an image
    are fine (a partial copy of the split).
    """
    split_dir = os.fspath(split_dir)
    names = []
    with _progress(f"Indexing {split_dir}", None, progress) as advance:
        for entry in os.scandir(split_dir):
            if entry.is_file() and _has_extension(entry.name, extensions):
                names.append(entry.name)
                if len(names) % 1000 == 0:
                    advance(1000)
    names.sort()
    lookup = {c: i for i, c in enumerate(classes)}
    unlabelled = [n for n in names if os.path.splitext(n)[0] not in label_of]
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} images in {split_dir} have no label in {label_source}, e.g. {unlabelled[:3]}"
        )
    labels = [label_of[os.path.splitext(n)[0]] for n in names]
    unknown = sorted({c for c in labels if c not in lookup})
    if unknown:
        raise ValueError(
            f"{label_source} labels images of classes that are not among the {len(classes)} training "
            f"classes: {unknown[:5]}"
        )
    if not names:
        raise FileNotFoundError(f"no images directly in {split_dir} (extensions {tuple(extensions)})")
    if len(names) < len(label_of):
        log.info("%s: %d of the %d labelled images are present", split_dir, len(names), len(label_of))
    index = make_index(split_dir, names, [lookup[c] for c in labels], classes)
    return index, IndexSource([split_dir])


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/litvision/index`` (``~/.cache/litvision/index``): the default place for index files."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "litvision" / "index"


class IndexCache:
    """``.npz`` files of indices, in the user's cache unless ``cache_dir`` names a folder.

    Not next to the data by default: a photo folder is the user's, and litvision writes nothing
    into it unasked. The cache key holds the tree's absolute path, so one cache folder serves
    every tree. To share the index with everyone who reads the tree (a team's ImageNet copy), ask
    for it there: ``dataset.index_cache_dir=${dataset.data_dir}/.litvision_index``.

    Args:
        cache_dir: where to keep the index files; None: :func:`user_cache_dir`.
        data_dir: the dataset root (kept for callers; the key names the tree).
    """

    def __init__(self, cache_dir: str | os.PathLike | None, data_dir: str | os.PathLike) -> None:
        self.dir = Path(cache_dir).expanduser() if cache_dir else user_cache_dir()

    def path_for(self, key: str) -> Path:
        digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return self.dir / f"index-{digest}.npz"

    def load(self, key: str) -> tuple[FileIndex, dict] | None:
        """The index cached for ``key``; None if there is none or it cannot be read (then re-indexed)."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"]))
                if meta.get("version") != CACHE_VERSION or meta.get("key") != key:
                    return None
                index = FileIndex(meta["root"], npz["paths"], npz["labels"].astype(np.int64), list(meta["classes"]))
            if (
                index.paths.ndim != 1
                or index.paths.shape != index.labels.shape
                or not {"dirs", "files"} <= set(meta["fingerprint"])
            ):
                raise ValueError(f"{len(index.paths)} paths but {len(index.labels)} labels")
        except Exception as e:
            log.warning("ignoring the unreadable index cache %s (%s: %s): re-indexing", path, type(e).__name__, e)
            return None
        return index, meta

    def save(self, key: str, index: FileIndex, fp: dict) -> None:
        """Whole or not at all (fsync + rename): readers and other ranks never see half a file."""
        meta = {"version": CACHE_VERSION, "key": key, "root": index.root, "classes": index.classes, "fingerprint": fp}
        path = self.path_for(key)
        try:
            write_atomic(
                path,
                lambda handle: np.savez(
                    handle, paths=index.paths, labels=index.labels, meta=np.array(json.dumps(meta))
                ),
            )
        except OSError as e:
            log.warning(
                "cannot write the index cache %s (%s): the tree will be re-indexed next time; "
                "set dataset.index_cache_dir to a writable folder",
                path,
                e,
            )


def cached_index(
    cache: IndexCache | None,
    key: str,
    build: Callable[[], tuple[FileIndex, IndexSource]],
    extra: str = "",
    label_files: Sequence[str | os.PathLike] = (),
) -> FileIndex:
    """The cached index for ``key`` if its tree and label files are unchanged, else ``build()`` (cached).

    ``key`` names the tree (e.g. the split folder); ``extra`` is anything else the labels depend
    on (the label space a val index is mapped into, the extensions) and ``label_files`` the
    files ``build`` reads labels from. Both are part of the cache key, so another choice
    never finds this index; the label files' contents are part of the fingerprint, so an
    edited file is re-read.
    """
    tree, label_paths = key, [os.path.abspath(f) for f in label_files]
    key = json.dumps({"tree": tree, "extra": extra, "label_files": label_paths})
    # hashed before the build reads them: a file changed during the build differs next start
    files = file_hashes(label_paths)
    if cache is not None:
        entry = cache.load(key)
        if entry is not None:
            index, meta = entry
            fp = meta["fingerprint"]
            if fingerprint([d for d, *_ in fp["dirs"]], files) == fp:
                log.info("using the cached file index %s (%d images)", cache.path_for(key), len(index))
                return index
            log.info("%s or its label files changed since it was indexed: re-indexing", tree)
    started = time.time_ns()
    index, source = build()
    fp = fingerprint(source.dirs, files)
    if cache is not None and fp is not None:
        if _newest_mtime(fp) >= started - RACY_WINDOW_NS:
            log.info("%s was modified in the last seconds: index not cached (built again next start)", tree)
        else:
            cache.save(key, index, fp)
    return index


def digest(values: Iterable[str]) -> str:
    """Short stable hash of a list of names (e.g. the label space) for fingerprints."""
    return hashlib.sha1("\n".join(values).encode("utf-8", "surrogateescape")).hexdigest()[:16]
