"""Image health: sizes, grayscale, CMYK, PNG named .JPEG, truncated and unreadable files, with the file lists."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litvision.data_audit.health import run_health
from litvision.data_audit.scan import inspect_file, scan_split, sniff_format
from litvision.data_audit.sources import load_audit_data
from litvision.datamodules.class_folder import ClassFolderDataModule
from tests.helpers.imagenet_trees import bad_image_bytes, build_train, build_val, generated_samples, real_samples
from tests.helpers.run_helpers import run_script

# what each planted file of imagenet_trees.bad_image_bytes() must be reported as
PLANTED_ISSUE = {
    "cmyk": "cmyk",
    "grayscale": "grayscale",
    "png": "png_named_jpeg",
    "truncated": "truncated",
    "empty": "unreadable",
}


def plant_bad_files(root: Path, wnids: list[str], splits=("train", "val")) -> dict[str, str]:
    """The awkward files in every split; returns {id (path under root): expected issue}."""
    planted = {}
    for split in splits:
        for k, (name, data) in enumerate(bad_image_bytes().items()):
            rel = f"{split}/{wnids[k % len(wnids)]}/{name}.JPEG"
            (root / rel).write_bytes(data)
            planted[rel] = PLANTED_ISSUE[name]
    return planted


def read_health(run_dir: Path) -> dict[str, set[str]]:
    with open(run_dir / "audit" / "health.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["id", "split", "issue", "detail"]
        found: dict[str, set[str]] = {}
        for row in reader:
            found.setdefault(row["issue"], set()).add(row["id"])
    return found


def looks_gray(path: Path) -> bool:
    """Independent of the audit's decoder: Pillow's mode, or equal channels after Pillow's decode."""
    with Image.open(path) as image:
        if image.mode in ("L", "LA", "1"):
            return True
        rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def test_sniffed_formats_and_single_file_findings() -> None:
    files = bad_image_bytes()
    assert sniff_format(files["png"]) == "png" and sniff_format(files["cmyk"]) == "jpeg" and sniff_format(b"") == ""


def test_generated_tree_lists_every_awkward_file(tmp_path) -> None:
    samples = generated_samples(tmp_path / "gen", num_classes=3, per_class=3)
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    planted = plant_bad_files(root, sorted({w for w, _ in samples}))
    data = load_audit_data(
        ClassFolderDataModule(str(root), val_split="val", test_split="val", num_workers=0, progress=False)
    )
    scans = {name: scan_split(split, 32, num_workers=0) for name, split in data.splits.items()}
    section = run_health(data, scans, tmp_path / "out")
    found: dict[str, set[str]] = {}
    with open(tmp_path / "out" / "health.csv", newline="") as f:
        for row in csv.DictReader(f):
            found.setdefault(row["issue"], set()).add(row["id"])
    for sample_id, issue in planted.items():
        assert sample_id in found.get(issue, set()), (sample_id, issue, found)
    # the generated colour images have no issue; the grayscale ones are exactly the planted ones
    assert found["grayscale"] == {i for i, issue in planted.items() if issue == "grayscale"}
    assert section.metrics["health/truncated"] == 2 and section.metrics["health/unreadable"] == 2
    assert (tmp_path / "out" / "image_sizes.png").is_file()
    text = "\n".join(section.markdown)
    assert all(f"`{sample_id}`" in text for sample_id in planted)  # the file lists are in the report
    # sizes come from the decoded images
    scan = scans["train"]
    ok = scan.width > 0
    assert set(zip(scan.width[ok], scan.height[ok], strict=True)) == {(160, 120), (400, 300)}


def test_unreadable_file_records_the_reason(tmp_path) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(b"not an image at all")
    width, height, file_format, issues, digest, thumb = inspect_file(str(path).encode(), 16)
    assert (width, height, file_format, digest) == (0, 0, "", "") and issues[0][0] == "unreadable"
    assert thumb.shape == (16, 16)


@pytest.mark.slow  # ~22 CPU s (a full audit.py run on the real data)
def test_imagenet_samples_tree_lists_grayscale_images_and_every_planted_bad_file(tmp_path) -> None:
    """Issue 9 acceptance: on the real ImageNet samples (train/ + a val/ folder), the health section
    lists the grayscale images and every planted bad file."""
    samples = real_samples()
    root = tmp_path / "imagenet"
    build_train(root, samples)
    build_val(root, samples[:40], "folders")
    planted = plant_bad_files(root, [w for w, _ in samples[:5]])
    run_dir = tmp_path / "run"
    run_script(
        "audit.py",
        "dataset=imagenet",
        f"dataset.data_dir={root}",
        "dataset.progress=false",
        "audit.sections=[health]",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    )
    found = read_health(run_dir)
    for sample_id, issue in planted.items():
        assert sample_id in found.get(issue, set()), (sample_id, issue)
    gray = {
        str(p.relative_to(root)) for p in root.glob("*/*/*.JPEG") if p.name[:-5] not in PLANTED_ISSUE and looks_gray(p)
    }
    assert len({g for g in gray if g.startswith("train/")}) >= 23  # the README's count of grayscale JPEGs
    assert found["grayscale"] == gray | {i for i, issue in planted.items() if issue == "grayscale"}
    report = (run_dir / "audit" / "report.md").read_text()
    assert all(f"`{sample_id}`" in report for sample_id in planted)
