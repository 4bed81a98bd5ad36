"""prepare_shards.py and other people's files (issue 17 items 5 and 6): it never deletes or replaces
what it did not record as its own, two runs never write one folder, and its writer processes die
with it (``kill -9``) so that a re-run never races a leftover writer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("webdataset", reason="the shards extra (pip install -e '.[shards]') is not installed")

from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.shards import ownership
from litvision.datamodules.shards.prepare import prepare
from litvision.utils.errors import ConfigError
from tests.helpers.run_helpers import REPO_ROOT, run_script, script_env, start_script


def class_tree(root: Path, per_class: int = 6, size: tuple[int, int] = (24, 32), fmt: str = "png") -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{fmt}", quality=90)
    return root


def datamodule(root: Path) -> ClassFolderDataModule:
    return ClassFolderDataModule(str(root), "val", "val", progress=False)


def state(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file below ``folder``: size, mtime and content (the lock files change on every run)."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("prepare.lock", "writers.lock")
    }


FOREIGN = {
    "laion-000123.tar": b"another project's shard",
    "manifest.json": b'{"theirs": true}\n',
    ".x.tmp": b"x",
    ".train-000000.tar.abcdefgh.tmp": b"looks like ours, is not",
}


def plant(out: Path, files: dict[str, bytes]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)


def test_a_folder_that_is_not_ours_is_refused_in_one_line_and_left_untouched(tmp_path):
    root = class_tree(tmp_path / "tree")
    out = tmp_path / "out"
    plant(out, FOREIGN)
    before = state(out)
    with pytest.raises(
        ConfigError, match=r"not empty and is not a shard set prepare_shards.py started.*nothing there was touched"
    ):
        prepare(datamodule(root), out, samples_per_shard=4)
    assert state(out) == before and sorted(os.listdir(out)) == sorted(FOREIGN)  # not even .parts/
    proc = run_script(
        "prepare_shards.py",
        "dataset=class_folder",
        f"dataset.data_dir={root}",
        "dataset.progress=false",
        f"out={out}",
        "workers=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        check=False,
    )
    assert proc.returncode == 1 and state(out) == before
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ConfigError: out=") and "Traceback" not in proc.stderr


def test_foreign_files_dropped_into_our_folder_stay_and_our_temp_files_go(tmp_path):
    root = class_tree(tmp_path / "tree")
    out = tmp_path / "out"
    first = prepare(datamodule(root), out, samples_per_shard=4)
    foreign = {k: v for k, v in FOREIGN.items() if k != "manifest.json" and not k.startswith(".train")}
    plant(out, foreign)
    plant(out / ".parts", {".y.tmp": b"y", "notes.txt": b"mine"})
    ours = [
        out / ".train-000001.tar.k2j4h5g6.tmp",
        out / ".parts" / ".train-000001.tar.json.a1b2c3d4.tmp",
        out / ".manifest.json.zz99yy88.tmp",
    ]  # temp files of names our plan records: a killed run's
    for path in ours:
        path.write_bytes(b"partial")
    (out / "train-000001.tar").unlink()  # and a shard to write again
    again = prepare(datamodule(root), out, samples_per_shard=4)
    assert again["written_shards"] == 1 and again["reused_shards"] == first["shards"] - 1
    assert not any(path.exists() for path in ours)
    for name, data in foreign.items():
        assert (out / name).read_bytes() == data
    assert (out / ".parts" / ".y.tmp").read_bytes() == b"y" and (out / ".parts" / "notes.txt").exists()


def test_another_plan_is_refused_and_nothing_changes(tmp_path):
    root = class_tree(tmp_path / "tree")
    out = tmp_path / "out"
    prepare(datamodule(root), out, samples_per_shard=2)
    before = state(out)
    with pytest.raises(ConfigError, match="holds the shards of another plan.*nothing was changed"):
        prepare(datamodule(root), out, samples_per_shard=5)
    assert state(out) == before


def test_a_manifest_someone_else_changed_is_not_deleted(tmp_path):
    root = class_tree(tmp_path / "tree")
    out = tmp_path / "out"
    prepare(datamodule(root), out, samples_per_shard=4)
    (out / "manifest.json").write_text('{"edited": "by hand"}\n')
    with pytest.raises(ConfigError, match="manifest.json is not the manifest prepare_shards.py wrote"):
        prepare(datamodule(root), out, samples_per_shard=4)
    assert (out / "manifest.json").read_text() == '{"edited": "by hand"}\n'


def hold(what: str, out: Path) -> subprocess.Popen:
    """Another process holding ``out``'s run lock (``run``) or writers lock (``writer``) until killed."""
    code = {
        "run": "from litvision.datamodules.shards.ownership import OutputFolder\nfolder = OutputFolder(out).__enter__()\n",
        "writer": "from litvision.datamodules.shards.ownership import hold_writers_lock\nhold_writers_lock(out)\n",
    }[what]
    script = f"import sys, time\nfrom pathlib import Path\nout = Path(sys.argv[1])\n{code}print('held', flush=True)\ntime.sleep(120)\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(out)], env=script_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_prepare_is_refused_while_the_first_holds_the_folder(tmp_path):
    root = class_tree(tmp_path / "tree")
    out = tmp_path / "out"
    holder = hold("run", out)
    try:
        with pytest.raises(
            ConfigError,
            match=rf"being written by another prepare_shards.py \(pid {holder.pid} on {socket.gethostname()}",
        ):
            prepare(datamodule(root), out, samples_per_shard=4)
    finally:
        holder.kill()
        holder.wait()
    assert prepare(datamodule(root), out, samples_per_shard=4)["written_shards"] > 0  # the lock died with it


def test_a_run_waits_for_leftover_writers_and_refuses_if_they_stay(tmp_path, monkeypatch):
    root = class_tree(tmp_path / "tree")
    out = tmp_path / "out"
    prepare(datamodule(root), out, samples_per_shard=4)
    (out / "train-000000.tar").unlink()
    writer = hold("writer", out)
    monkeypatch.setattr(ownership, "LEFTOVER_WRITER_WAIT_S", 0.5)
    try:
        with pytest.raises(ConfigError, match="writer processes of an earlier prepare_shards.py still hold"):
            prepare(datamodule(root), out, samples_per_shard=4)
        assert not (out / "train-000000.tar").exists()  # nothing written while the writer lives
    finally:
        writer.kill()
        writer.wait()
    assert prepare(datamodule(root), out, samples_per_shard=4)["written_shards"] == 1


# ---- kill -9 --------------------------------------------------------------------------------


def descendants(pid: int) -> dict[int, int]:
    """{pid: parent pid} of every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child in children.get(parent, []):
            found[child] = parent
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except OSError:
        return False


@pytest.mark.slow  # ~90 s on the shared 2-core machine: a prepare_shards.py run, killed, then a re-run
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_takes_the_writers_with_it_and_a_rerun_completes(tmp_path):
    root = class_tree(tmp_path / "tree", per_class=60, size=(700, 700), fmt="jpg")  # 120 images, ~40 shards
    out = tmp_path / "out"
    proc = start_script(
        "prepare_shards.py",
        "dataset=class_folder",
        f"dataset.data_dir={root}",
        "dataset.progress=false",
        f"out={out}",
        "workers=3",
        "samples_per_shard=3",
        f"hydra.run.dir={tmp_path / 'run'}",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not list((out / ".parts").glob("*.tar.json")):  # a shard written by a worker: mid-run
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "prepare_shards.py wrote no shard in time"
            time.sleep(0.02)
        below = descendants(proc.pid)  # the fork server and resource tracker, and the writers (forked by the former)
        with pytest.raises(ConfigError, match=f"being written by another prepare_shards.py \\(pid {proc.pid}"):
            prepare(datamodule(root), out, samples_per_shard=3)  # the running one holds the folder
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    writers = [pid for pid, parent in below.items() if parent != proc.pid]
    assert len(writers) == 3
    deadline = time.monotonic() + 3
    while any(alive(pid) for pid in writers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in writers if alive(pid)], "writer processes outlived the killed prepare_shards.py"
    deadline = time.monotonic() + 15  # the fork server's own exit (interpreter teardown) is slower
    while any(alive(pid) for pid in below) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in below if alive(pid)], "helper processes outlived the killed prepare_shards.py"
    assert not (out / "manifest.json").exists(), "the run finished before it was killed: make the tree bigger"
    written = state(out)
    time.sleep(1.5)
    assert state(out) == written, "something was written after the kill"

    stats = prepare(datamodule(root), out, samples_per_shard=3, workers=2)
    assert stats["reused_shards"] > 0 and stats["reused_shards"] + stats["written_shards"] == stats["shards"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["count"] == 120 and manifest["splits"]["val"]["count"] == 4
    assert not list(out.glob(".*.tmp")) and not list((out / ".parts").glob(".*.tmp"))
