"""Write every split a file DataModule uses as shards, in parallel, resumably, with a manifest.

What is written is exactly what the file DataModule would train, validate and test on: its
own index and :meth:`build_splits` (the ``val_split``/``test_split`` sources, a stratified
``holdout``, ``imbalance_factor``). Resuming: the plan is a pure function of that index, so a
re-run keeps every shard whose record matches its planned content and size, deletes temp
files of shards a killed run was writing, and writes the rest; ``manifest.json`` is written
last, from the records, so it exists only once every shard does. What in ``out=`` may be
written or deleted, and by which process, is :mod:`litvision.datamodules.shards.ownership`'s job.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from litvision.datamodules.shards.manifest import FORMAT, MANIFEST_NAME, is_remote
from litvision.datamodules.shards.ownership import OutputFolder, plan_digest
from litvision.datamodules.shards.write_plan import Member, ShardTask, plan_split
from litvision.datamodules.shards.writer import VERIFY_MODES, init_writer_process, read_record, write_shard
from litvision.utils.atomic_write import write_atomic
from litvision.utils.errors import ConfigError
from litvision.utils.names import escape_name

log = logging.getLogger(__name__)


def split_members(dataset: Any, data_dir: Path) -> list[Member]:
    """(id, label, path) of every sample of a :class:`FileListDataset`; id = path relative to ``data_dir``."""
    root = os.fsdecode(dataset.root)
    members = []
    for raw, label in zip(dataset.paths, dataset.targets, strict=True):
        path = os.path.join(root, os.fsdecode(raw))
        members.append(Member(os.path.relpath(path, data_dir), int(label), path))
    return members


def file_splits(datamodule: Any) -> dict[str, Any]:
    """``{split name: FileListDataset}`` for train and the val/test sources the DataModule uses."""
    datamodule.prepare_data()  # index (or load the cached index of) every split, with a progress bar
    splits = datamodule.run_splits()  # the DataModule's own exclusions, hold-out and long-tail cut
    return {"train": splits.train, datamodule.val_split: splits.val, datamodule.test_split: splits.test}


def prepare(
    datamodule: Any,
    out: str | os.PathLike,
    samples_per_shard: int = 1000,
    workers: int = 1,
    verify: str = "decode",
    shuffle_seed: int | None = 0,
) -> dict[str, Any]:
    """Write ``datamodule``'s splits as shards into ``out``; returns run statistics."""
    if is_remote(str(out)):
        raise ConfigError(f"out={out}: shards are written to a local folder; upload it afterwards (e.g. aws s3 sync)")
    if verify not in VERIFY_MODES:
        raise ConfigError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    out = Path(out).expanduser()
    data_dir = Path(datamodule.data_dir).expanduser()
    with OutputFolder(out) as folder:  # ours (new, empty or claimed), locked, no leftover writer
        started = time.perf_counter()
        datasets = file_splits(datamodule)
        tasks: list[ShardTask] = []
        for split, dataset in datasets.items():
            seed = shuffle_seed if split == "train" else None
            tasks += plan_split(split, split_members(dataset, data_dir), samples_per_shard, seed)
        folder.claim(plan_digest([(t.name, t.digest) for t in tasks]), [t.name for t in tasks])  # or refuse
        removed = folder.remove_partial_files()
        if removed:
            log.info("removed %d partial file(s) of an interrupted run", removed)
        records: dict[str, dict[str, Any]] = {}
        todo = []
        for task in tasks:
            record = read_record(out, task)
            if record is None:
                todo.append(task)
            else:
                records[task.name] = record
        if records:
            log.info("resuming: %d of %d shards already written, %d to write", len(records), len(tasks), len(todo))
        folder.remove_manifest()  # a manifest exists only while every shard it lists does
        for record in _write_all(todo, out, datamodule.on_bad_image, verify, workers, datamodule.max_image_pixels):
            records[record["name"]] = record
        manifest = _manifest(datamodule, datasets, tasks, records, samples_per_shard, shuffle_seed, verify)
        data = (json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()
        folder.record_manifest(data)  # first: a later run deletes only a manifest it knows as its own
        write_atomic(out / MANIFEST_NAME, lambda handle: handle.write(data))
    seconds = time.perf_counter() - started
    written = [records[t.name] for t in todo]
    stats = {
        "samples": sum(s["count"] for s in manifest["splits"].values()),
        "shards": len(tasks),
        "written_shards": len(todo),
        "reused_shards": len(tasks) - len(todo),
        "bad_files": sum(len(s["bad_files"]) for s in manifest["splits"].values()),
        "seconds": seconds,
        "written_images_per_s": sum(r["count"] for r in written) / seconds,
        "written_mb_per_s": sum(r["bytes"] for r in written) / 1e6 / seconds,
    }
    log.info(
        "%s: %d samples in %d shards (%d written, %d kept), %d unreadable file(s) left out; %.1f s, %.0f images/s",
        out,
        stats["samples"],
        stats["shards"],
        stats["written_shards"],
        stats["reused_shards"],
        stats["bad_files"],
        seconds,
        stats["written_images_per_s"],
    )
    return stats


def _write_all(todo: list[ShardTask], out: Path, policy: str, verify: str, workers: int, max_pixels: int | None):
    """Yield the record of every shard in ``todo`` as it completes (in worker processes if workers > 1)."""
    if not todo:
        return
    every = max(1, len(todo) // 20)
    if workers <= 1:
        for done, task in enumerate(todo, start=1):
            yield write_shard(task, str(out), policy, verify, max_pixels)
            if done % every == 0 or done == len(todo):
                log.info("wrote %d/%d shards", done, len(todo))
        return
    # each worker dies with this process and holds the writers lock (see datamodules/shards/ownership.py)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_worker_context(),
        initializer=init_writer_process,
        initargs=(str(out), os.getpid()),
    ) as pool:
        pending = {pool.submit(write_shard, task, str(out), policy, verify, max_pixels) for task in todo}
        done_count = 0
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                if (error := future.exception()) is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                done_count += 1
                if done_count % every == 0 or done_count == len(todo):
                    log.info("wrote %d/%d shards", done_count, len(todo))
                yield future.result()


def _worker_context() -> multiprocessing.context.BaseContext:
    """forkserver with the writer preloaded: workers start in milliseconds (a spawned one
    re-imports torch & co., ~10 s on a busy machine) and are not forks of this process,
    whose threads (progress display) may hold locks; spawn where there is no forkserver."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["litvision.datamodules.shards.writer"])
    return context


def _manifest(datamodule, datasets, tasks, records, samples_per_shard, shuffle_seed, verify) -> dict[str, Any]:
    num_classes = datamodule.num_classes
    splits: dict[str, Any] = {}
    for split in datasets:
        shard_records = [records[t.name] for t in tasks if t.split == split]
        counts = np.zeros(num_classes, dtype=np.int64)
        for record in shard_records:
            for label, n in record["class_counts"].items():
                counts[int(label)] += n
        splits[split] = {
            "count": int(counts.sum()),
            "class_counts": counts.tolist(),
            "bad_files": [bad for r in shard_records for bad in r["bad_files"]],
            "shards": [{k: r[k] for k in ("name", "count", "bytes", "sha256")} for r in shard_records],
        }
    return {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "classes": [escape_name(name) for name in datamodule.index("train").classes],
        "class_names": [escape_name(name) for name in datamodule.class_names],
        "splits": splits,
        "default_splits": {"val": datamodule.val_split, "test": datamodule.test_split},
        "samples_per_shard": samples_per_shard,
        "shuffle_seed": shuffle_seed,
        "source": {
            "datamodule": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
            "data_dir": str(Path(datamodule.data_dir).expanduser().resolve()),
            "imbalance_factor": datamodule.imbalance_factor,
            "on_bad_image": datamodule.on_bad_image,
            "max_image_pixels": datamodule.max_image_pixels,
            "verify": verify,
        },
    }
