"""Read one shard as samples, checked against its manifest entry while it streams.

A shard set is outside input (copied, shared, downloaded), so every member is checked as it
is read: names (:func:`~litvision.datamodules.shards.manifest.parse_member_name`), one image, one
``.cls`` label in [0, num_classes) and one ``.id.txt`` per sample, keys in increasing order,
a regular file of bounded size each. A read that reaches the end of the shard also checks
what only a whole read can: the sample count equals the manifest's (more or fewer samples
both fail), and, by ``verify``, the byte count (``size``) and the SHA-256 (``sha256``),
hashed while reading and compared at the end of the shard. A read that stops inside a shard
(a loader worker's share ends there) checks its own members only; the shard's end is read
by whoever reads its last sample, once per epoch. Any problem is one
:class:`~litvision.utils.errors.DataError` naming the shard and the member.

Why not WebDataset's tar iterator: it ends quietly at a corrupt header, drops members named
like metadata, raises bare ``ReadError``/``ValueError`` without the member, and cannot hash
what it reads. Tar parsing here is the standard library's (``tarfile`` stream mode, as
WebDataset's); opening URLs stays WebDataset's ``gopen`` (files, HTTP(S), GCS, AIStore, pipes).
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from typing import IO, Any, cast

from litvision.datamodules.shards.manifest import REWRITE, ShardEntry, is_remote, parse_label, parse_member_name
from litvision.utils.errors import DataError, MissingDataError

VERIFY_LEVELS = ("none", "size", "sha256")
MAX_MEMBER_BYTES = 1 << 30  # no image in a shard is near 1 GiB; a header claiming more is refused unread
_SAMPLE_FIELDS = ("cls", "id.txt")


class _Meter:
    """The shard's bytes as ``tarfile`` reads them: counted, hashed if asked, and refused past
    ``limit`` (the manifest's size), so a stream that runs on is never read to its end."""

    def __init__(self, handle: Any, url: str, limit: int | None, hasher: Any) -> None:
        self.handle, self.url, self.limit, self.hasher = handle, url, limit, hasher
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.bytes += len(data)
        if self.limit is not None and self.bytes > self.limit:
            raise DataError(f"shard {self.url} is larger than its manifest entry ({self.limit} bytes); {REWRITE}")
        if self.hasher is not None:
            self.hasher.update(data)
        return data

    def drain(self) -> None:
        """Read what follows the tar's end-of-archive blocks (padding), to count and hash it too."""
        while self.read(1 << 16):
            pass


class _Position:
    """How far the reader got, for messages: the member being read, samples completed."""

    member: str | None = None
    count = 0


def open_shard(url: str) -> Any:
    if not is_remote(url):
        try:
            return open(url, "rb")
        except FileNotFoundError as e:
            raise MissingDataError(f"shard {url} listed in the manifest does not exist; {REWRITE}") from e
        except OSError as e:
            raise DataError(f"cannot read shard {url} ({e})") from e
    from webdataset import gopen

    try:
        return gopen(url, "rb")
    except (OSError, ValueError) as e:
        raise DataError(f"cannot open shard {url} ({e}); check dataset.shards and your credentials") from e


def read_shard(
    url: str,
    entry: ShardEntry,
    num_classes: int,
    skip: int = 0,
    take: int | None = None,
    verify: str = "size",
) -> Iterator[dict[str, Any]]:
    """Samples ``skip`` to ``skip + take`` of the shard (``__key__``, ``__url__``, ``__position__`` in
    the shard, the image field, ``cls`` as an int, ``id.txt``); the image bytes of the samples before
    ``skip`` are passed over unread."""
    if verify not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {verify!r}")
    take = entry.count - skip if take is None else take
    stop = skip + take
    whole = stop == entry.count  # this read reaches the shard's end: check what only a whole read can
    if take <= 0 and not whole:
        return
    hasher = hashlib.sha256() if whole and verify == "sha256" else None
    meter = _Meter(open_shard(url), url, entry.bytes if verify != "none" else None, hasher)
    where = _Position()
    finished = False
    try:
        samples = _samples(meter, url, num_classes, lambda position: skip <= position < stop, where)
        for position, sample in enumerate(samples):
            if position >= entry.count:
                raise DataError(
                    f"shard {url} holds more samples than its manifest entry ({entry.count}), e.g. "
                    f"key {sample['__key__']}; {REWRITE}"
                )
            if position >= skip:
                sample["__position__"] = position
                yield sample
            if position + 1 == stop and not whole:
                return
        if where.count < entry.count:
            raise DataError(
                f"shard {url} holds {where.count} samples, its manifest entry {entry.count}: the shard "
                f"is truncated or changed; {REWRITE}"
            )
        if verify != "none":
            meter.drain()
            if meter.bytes != entry.bytes:
                raise DataError(f"shard {url} is {meter.bytes} bytes, its manifest entry {entry.bytes}; {REWRITE}")
        if hasher is not None and hasher.hexdigest() != entry.sha256:
            raise DataError(
                f"shard {url} does not match the SHA-256 in its manifest entry (its bytes changed "
                f"since it was written); {REWRITE}"
            )
        finished = True
    except OSError as e:  # the file or pipe failed (I/O error, the CLI behind a pipe exited with an error)
        at = f" at member {where.member!r}" if where.member is not None else ""
        raise DataError(f"cannot read shard {url}{at} ({e}); check dataset.shards and your credentials") from e
    except (tarfile.TarError, EOFError) as e:
        if where.member is None:
            raise DataError(f"shard {url} is not a tar file ({e}); {REWRITE}") from e
        raise DataError(f"shard {url} is truncated or corrupt at member {where.member!r} ({e}); {REWRITE}") from e
    finally:
        _close(meter.handle, url, quiet=not finished)


def _close(handle: Any, url: str, quiet: bool) -> None:
    """Close the file or pipe; a pipe's exit status counts only after a whole read (one stopped
    early ends its reader with SIGPIPE)."""
    try:
        handle.close()
    except Exception as e:
        if not quiet:
            raise DataError(f"cannot read shard {url} ({e}); check dataset.shards and your credentials") from e


def _samples(meter: _Meter, url: str, num_classes: int, wanted: Any, where: _Position) -> Iterator[dict[str, Any]]:
    """Group the tar's members into checked samples; image bytes only for positions ``wanted``."""
    tar = tarfile.open(fileobj=cast("IO[bytes]", meter), mode="r|")  # a stream read needs only read()
    sample: dict[str, Any] | None = None
    last_key = -1
    while (info := tar.next()) is not None:
        tar.members = []  # type: ignore[attr-defined]  # stream mode keeps every header otherwise (not in typeshed)
        where.member = info.name
        key, field = parse_member_name(info.name, url)
        if not info.isreg() or info.size > MAX_MEMBER_BYTES:
            raise DataError(
                f"shard {url}: member {info.name!r} is not a regular file under {MAX_MEMBER_BYTES >> 20} MB; {REWRITE}"
            )
        if sample is None or key != sample["__key__"]:
            if sample is not None:
                yield _finished(sample, url, num_classes, where)
            if int(key) <= last_key:
                raise DataError(f"shard {url}: member {info.name!r} repeats or reorders key {key}; {REWRITE}")
            last_key = int(key)
            sample = {"__key__": key, "__url__": url}
        if field in sample or (field not in _SAMPLE_FIELDS and "__image__" in sample):
            raise DataError(f"shard {url}: member {info.name!r} is a second {field!r} of sample {key}; {REWRITE}")
        if field not in _SAMPLE_FIELDS:
            sample["__image__"] = field
            if not wanted(where.count):
                sample[field] = b""  # passed over: tarfile skips its bytes (still counted and hashed)
                continue
        member = tar.extractfile(info)
        assert member is not None  # a regular file (checked above)
        sample[field] = member.read()
    if sample is not None:
        yield _finished(sample, url, num_classes, where)


def _finished(sample: dict[str, Any], url: str, num_classes: int, where: _Position) -> dict[str, Any]:
    key = sample["__key__"]
    missing = [f for f in ("__image__", *_SAMPLE_FIELDS) if f not in sample]
    if missing:
        names = " and ".join("an image" if f == "__image__" else f"{key}.{f}" for f in missing)
        raise DataError(
            f"shard {url}: sample {key} lacks {names} (each sample is an image, a .cls label and an .id.txt); {REWRITE}"
        )
    sample["cls"] = parse_label(sample["cls"], num_classes, url, f"{key}.cls")
    where.count += 1
    return sample
