"""Shard sets are outside input: a manifest or shard that is not what prepare_shards.py wrote is
refused in one line naming the entry or member (issue 17, items 2, 3 and the shard parts of 12).

Each case takes a small shard set written by prepare_shards' own writer, spoils one thing, and
checks that reading it stops with a DataError (never silently reading a subset, a changed image
or a changed label; never a raw ReadError/IndexError/KeyError; never a shell command run).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("webdataset", reason="the shards extra (pip install -e '.[shards]') is not installed")

from litvision.datamodules.class_folder import ClassFolderDataModule
from litvision.datamodules.shard_datamodule import ShardDataModule
from litvision.datamodules.shards.prepare import prepare
from litvision.utils.errors import DataError, MissingDataError
from tests.helpers.imagenet_trees import age_tree, build_train, build_val, generated_samples
from tests.helpers.run_helpers import REPO_ROOT

VAL = "val-000000.tar"  # 3 classes x 3 val images, 4 per shard: val-000000 (4), val-000001 (4), val-000002 (1)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("verify")
    samples = generated_samples(tmp / "gen", num_classes=3, per_class=3, size=(24, 32))
    root = tmp / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    age_tree(root)
    out = tmp / "shards"
    prepare(
        ClassFolderDataModule(str(root), val_split="val", test_split="val", progress=False),
        out,
        samples_per_shard=4,
        workers=1,
    )
    return out


@pytest.fixture
def shards(template, tmp_path) -> Path:
    """A fresh copy of the shard set to spoil."""
    return Path(shutil.copytree(template, tmp_path / "shards"))


def resize():
    from albumentations import Compose, Resize

    return Compose([Resize(16, 16)])


def dm(location, **kwargs) -> ShardDataModule:
    args = {"batch_size": 4, "num_workers": 0, "train_transform": resize(), "eval_transform": resize(), "seed": 0}
    return ShardDataModule(str(location), **{**args, **kwargs})


def val_labels(location, **kwargs) -> list[int]:
    """Set up and evaluate: the labels of every val batch (what an eval run would score)."""
    module = dm(location, **kwargs)
    module.setup("fit")
    return torch.cat([y for _, y in module.val_dataloader()]).tolist()


def manifest(shards: Path) -> dict:
    return json.loads((shards / "manifest.json").read_text())


def write_manifest(shards: Path, data: dict) -> None:
    (shards / "manifest.json").write_text(json.dumps(data))


def entry(data: dict, name: str) -> dict:
    split = name.split("-")[0]
    return next(e for e in data["splits"][split]["shards"] if e["name"] == name)


def refresh_entry(shards: Path, name: str) -> None:
    """Make the manifest's size and SHA-256 of ``name`` match the file (only the planted defect remains)."""
    data = manifest(shards)
    raw = (shards / name).read_bytes()
    entry(data, name).update(bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    write_manifest(shards, data)


def member_offset(path: Path, suffix: str, index: int = 0) -> tuple[int, int]:
    """(offset, size) in the file of the data of the index-th member whose name ends with ``suffix``."""
    with tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(suffix)]
    return members[index].offset_data, members[index].size


def rewrite_tar(path: Path, change) -> None:
    """Rewrite the tar with its members ``[(name, data), ...]`` replaced by ``change(members)``."""
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in change(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def each_member(change):
    """A ``rewrite_tar`` change applying ``change(name, data) -> [(name, data), ...]`` to each member."""
    return lambda members: [new for name, data in members for new in change(name, data)]


def test_the_intact_set_reads_every_sample_under_every_level(shards):
    counts = manifest(shards)["splits"]["val"]["class_counts"]
    for level in ("none", "size", "sha256", "auto"):
        labels = val_labels(shards, verify_shards=level)
        assert np.bincount(labels, minlength=3).tolist() == counts == [3, 3, 3]


# ---- item 2: names from a manifest never run or open anything ----------------------------

FAKE_AWS = """#!/bin/sh
# stands in for the AWS CLI: "aws s3 cp s3://bucket/<key> -" prints $FAKE_S3_ROOT/<key>
echo "$@" >> "$FAKE_S3_LOG"
[ "$1 $2 $4" = "s3 cp -" ] || exit 2
exec cat "$FAKE_S3_ROOT/${3#s3://bucket/}"
"""


@pytest.fixture
def fake_aws(tmp_path, monkeypatch) -> Path:
    """A stand-in ``aws`` on PATH serving ``s3://bucket/...`` from tmp_path/s3; returns its call log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    (tmp_path / "s3").mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_S3_ROOT", str(tmp_path / "s3"))
    monkeypatch.setenv("FAKE_S3_LOG", str(tmp_path / "aws.log"))
    return tmp_path / "aws.log"


def test_an_s3_shard_set_streams_through_the_aws_cli(shards, tmp_path, fake_aws):
    shutil.copytree(shards, tmp_path / "s3" / "set")
    assert val_labels("s3://bucket/set") == val_labels(shards)
    calls = fake_aws.read_text().splitlines()
    assert "s3 cp s3://bucket/set/manifest.json -" in calls and f"s3 cp s3://bucket/set/{VAL} -" in calls


@pytest.mark.parametrize(
    "payload", ["; touch {marker} #", "$(touch {marker})", "`touch {marker}`", "' && touch {marker} && echo '"]
)
def test_a_shell_command_in_an_s3_shard_name_is_refused_unrun(shards, tmp_path, fake_aws, payload):
    marker = tmp_path / "pwned"
    data = manifest(shards)
    data["splits"]["val"]["shards"][0]["name"] = VAL + payload.format(marker=marker)
    write_manifest(shards, data)
    shutil.copytree(shards, tmp_path / "s3" / "set")
    with pytest.raises(DataError, match=r"splits\.val\.shards\[0\]\.name .*not a shard name"):
        val_labels("s3://bucket/set")
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_a_shard_name_outside_the_shard_location_is_never_opened(shards, template, tmp_path, kind):
    """The other set's tar is a valid shard with a matching entry: only its name is wrong."""
    other = Path(shutil.copytree(template, tmp_path / "other"))
    data = manifest(shards)
    outside = other / VAL if kind == "absolute" else Path("..") / "other" / VAL
    entry(data, VAL)["name"] = str(outside)
    write_manifest(shards, data)
    with pytest.raises(DataError, match=r"splits\.val\.shards\[0\]\.name .*no '/', '\.\.'"):
        val_labels(shards)


def test_shard_urls_quote_what_goes_into_a_pipe():
    import shlex

    from litvision.datamodules.shards.manifest import shard_url

    assert shlex.split(shard_url("s3://my bucket/set", VAL)[5:]) == [
        "aws",
        "s3",
        "cp",
        f"s3://my bucket/set/{VAL}",
        "-",
    ]
    for bad in ("/etc/passwd", "../x-000000.tar", "val-000000.tar;id", "val-0000001.tar", "val-000000.tar\n", "x"):
        with pytest.raises(DataError):
            shard_url("s3://bucket/set", bad)


# ---- item 3: contents are verified ------------------------------------------------------


def test_changed_image_bytes_are_refused_by_sha256(shards):
    offset, size = member_offset(shards / VAL, ".jpg", 1)
    raw = bytearray((shards / VAL).read_bytes())
    raw[offset + size // 2] ^= 0xFF  # same size, same tar structure, other pixels
    (shards / VAL).write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"{VAL} does not match the SHA-256"):
        val_labels(shards)  # evaluation checks SHA-256 by default
    with pytest.raises(DataError, match="SHA-256"):
        val_labels(shards, verify_shards="sha256")


def test_changed_labels_are_refused_by_sha256(shards):
    offset, size = member_offset(shards / VAL, ".cls", 0)
    raw = bytearray((shards / VAL).read_bytes())
    assert size == 1
    raw[offset] = ord("1") if raw[offset] != ord("1") else ord("2")  # another valid class: same size
    (shards / VAL).write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"{VAL} does not match the SHA-256"):
        val_labels(shards)


@pytest.mark.parametrize("level", ["none", "sha256"])
def test_manifest_counts_lower_than_the_content_are_refused(shards, level):
    """The issue's case: counts lowered consistently (shard, split, class) must not evaluate a subset."""
    data = manifest(shards)
    info = data["splits"]["val"]
    with tarfile.open(shards / VAL) as tar:
        first_label = int(tar.extractfile([m for m in tar.getmembers() if m.name.endswith(".cls")][-1]).read())
    entry(data, VAL)["count"] -= 1
    info["count"] -= 1
    info["class_counts"][first_label] -= 1
    write_manifest(shards, data)
    with pytest.raises(DataError, match=rf"{VAL} holds more samples than its manifest entry \(3\)"):
        val_labels(shards, verify_shards=level)


def test_manifest_counts_higher_than_the_content_are_refused(shards):
    data = manifest(shards)
    entry(data, VAL)["count"] += 1
    data["splits"]["val"]["count"] += 1
    data["splits"]["val"]["class_counts"][0] += 1
    write_manifest(shards, data)
    with pytest.raises(DataError, match=rf"{VAL} holds 4 samples, its manifest entry 5"):
        val_labels(shards, verify_shards="none")


def test_a_changed_size_is_refused_at_setup_unless_verification_is_off(shards):
    with open(shards / VAL, "ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(DataError, match=rf"{VAL} is \d+ bytes, its manifest entry \d+"):
        dm(shards, verify_shards="size").setup("fit")
    assert len(val_labels(shards, verify_shards="none")) == 9  # trailing zeros: the tar is intact


@pytest.mark.parametrize("label", [b"3", b"-1", b"x", b"1.0", b" 1", b"", b"99999999999999999999"])
def test_labels_outside_the_classes_or_not_integers_are_refused(shards, label):
    """Checked always (even verify_shards=none), naming the shard and the member."""
    rewrite_tar(shards / VAL, each_member(lambda name, data: [(name, label if name == "00000002.cls" else data)]))
    refresh_entry(shards, VAL)
    with pytest.raises(DataError, match=rf"{VAL}: member '00000002.cls' holds label .* not an integer in \[0, 3\)"):
        val_labels(shards, verify_shards="none")


@pytest.mark.parametrize("missing", [".cls", ".id.txt", ".jpg"])
def test_a_sample_missing_a_member_is_refused(shards, missing):
    rewrite_tar(shards / VAL, each_member(lambda name, data: [] if name == f"00000001{missing}" else [(name, data)]))
    refresh_entry(shards, VAL)
    with pytest.raises(DataError, match=rf"{VAL}: sample 00000001 lacks "):
        val_labels(shards)


@pytest.mark.parametrize(
    "bad_name",
    ["abc.jpg", "00000001", "1.jpg", "00000001.JPG", "dir/00000001.jpg", "00000001.jpg.exe", "00000001.cls\n"],
)
def test_a_member_whose_key_does_not_parse_is_refused(shards, bad_name):
    rewrite_tar(shards / VAL, each_member(lambda name, data: [(bad_name if name == "00000001.jpg" else name, data)]))
    refresh_entry(shards, VAL)
    with pytest.raises(DataError, match=rf"{VAL}: member .* is not a sample file"):
        val_labels(shards)


def test_repeated_keys_are_refused(shards):
    """A shard concatenated with itself: its samples would be read twice."""
    rewrite_tar(shards / VAL, lambda members: members + members)
    refresh_entry(shards, VAL)
    with pytest.raises(DataError, match=rf"{VAL}: member '00000000\.\w+' repeats or reorders key 00000000"):
        val_labels(shards, verify_shards="none")


@pytest.mark.parametrize("level", ["none", "size"])
def test_a_truncated_tar_is_one_line(shards, level):
    raw = (shards / VAL).read_bytes()
    offset, size = member_offset(shards / VAL, ".jpg", 2)
    (shards / VAL).write_bytes(raw[: offset + size // 2])  # cut inside an image
    if level == "size":  # a partial copy: refused before any process starts
        with pytest.raises(DataError, match=rf"{VAL} is {offset + size // 2} bytes, its manifest entry {len(raw)}"):
            dm(shards, verify_shards=level).setup("fit")
    refresh_entry(shards, VAL)  # even with a manifest matching the cut file
    with pytest.raises(DataError, match=rf"{VAL} is truncated or corrupt at member '00000002.jpg'"):
        val_labels(shards, verify_shards=level)


def test_a_manifest_entry_that_is_not_a_tar_is_one_line(shards, template):
    jpeg = next((template.parent / "gen").glob("*.JPEG")).read_bytes()
    (shards / VAL).write_bytes(jpeg + b"\0" * 16384)  # large enough for the 4 samples its entry claims
    refresh_entry(shards, VAL)
    with pytest.raises(DataError, match=rf"{VAL} is not a tar file"):
        val_labels(shards)


def test_a_missing_shard_is_refused_at_setup(shards):
    (shards / VAL).unlink()
    with pytest.raises(MissingDataError, match=rf"{VAL} listed in the manifest does not exist"):
        dm(shards).setup("fit")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("splits", "val", "shards", 0, "count"),
            10**12,
            r"splits\.val\.shards\[0\]\.count .* not an integer in \[0, \d+\]",
        ),
        (("splits", "val", "count"), 10**12, r"splits\.val\.count"),
        (("splits", "val", "shards", 0, "bytes"), 2**62, r"splits\.val\.shards\[0\]\.bytes"),
        (("splits", "val", "shards", 0, "count"), "4", r"splits\.val\.shards\[0\]\.count"),
        (("splits", "val", "shards", 0, "sha256"), "x", r"sha256 .*64 lowercase hex"),
        (("splits", "val", "class_counts"), [9], r"class_counts"),
        (("classes",), "n01", r"classes must be a list"),
        (("splits", "val", "shards", 1), "val-000001.tar", r"splits\.val\.shards\[1\] is str"),
        (("splits", "val", "shards", 1, "name"), VAL, r"lists a shard twice"),
        (("splits", "val", "shards", 1, "name"), "train-000001.tar", r"not a shard name val-NNNNNN\.tar"),
    ],
)
def test_absurd_or_inconsistent_manifest_numbers_are_refused_before_reading(shards, path, value, message):
    data = manifest(shards)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    write_manifest(shards, data)
    with pytest.raises(DataError, match=message):
        dm(shards).setup("fit")


def test_an_empty_shard_claimed_for_a_full_one_is_refused(shards):
    """A count of 0 takes a shard out of every reading plan: it is checked to be empty at setup."""
    data = manifest(shards)
    info = data["splits"]["val"]
    info["count"] -= entry(data, "val-000002.tar")["count"]
    info["class_counts"] = np.bincount(val_labels(shards)[:8], minlength=3).tolist()  # the 8 samples of shards 0-1
    entry(data, "val-000002.tar")["count"] = 0
    write_manifest(shards, data)
    with pytest.raises(DataError, match=r"val-000002\.tar holds more samples than its manifest entry \(0\)"):
        dm(shards, verify_shards="none").setup("fit")


# ---- one line from the entry scripts, also from inside a loader worker --------------------


def test_a_changed_shard_stops_train_py_with_one_line_from_a_loader_worker(shards, tmp_path):
    offset, size = member_offset(shards / VAL, ".jpg", 1)
    raw = bytearray((shards / VAL).read_bytes())
    raw[offset + size // 2] ^= 0xFF
    (shards / VAL).write_bytes(bytes(raw))
    env = {**os.environ, "WANDB_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}
    for name in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "train.py"),
            "dataset=imagenet_shards",
            f"dataset.shards={shards}",
            "model=small_cnn",
            "model.backbone.width=4",
            "augmentation.resolution=16",
            "dataset.num_workers=1",
            "dataset.persistent_workers=false",
            "dataset.batch_size=4",
            "trainer=cpu",
            "trainer.max_epochs=1",
            "logger=none",
            "test=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert re.fullmatch(rf"DataError: shard \S*{VAL} does not match the SHA-256 .*prepare_shards\.py.*", last), last
    assert not (tmp_path / "run" / "metrics.json").exists()
