"""Build ILSVRC-2012-style trees in a temp dir, from the real sample JPEGs or generated ones.

Used by the tests of the ImageNet data module; not collected as a test module itself.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imagenet-samples"


def real_samples() -> list[tuple[str, Path]]:
    """[(wnid, path)] of the 1000 real ImageNet JPEGs (one per class); skips the test if absent."""
    if not SAMPLES.is_dir():
        pytest.skip(f"real ImageNet samples not found at {SAMPLES} (shared/data is beside the checkout in CI)")
    files = sorted(SAMPLES.glob("n*_*.JPEG"))
    if len(files) != 1000:
        pytest.skip(f"expected 1000 sample JPEGs in {SAMPLES}, found {len(files)}")
    return [(f.name.split("_", 1)[0], f) for f in files]


def generated_samples(
    folder: Path, num_classes: int = 6, per_class: int = 1, size=(120, 160)
) -> list[tuple[str, Path]]:
    """JPEGs with a class-specific colour, in wnid-like classes n9000000k."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for c in range(num_classes):
        wnid = f"n9{c:07d}"
        for k in range(per_class):
            pixels = np.clip(rng.normal(40 * c, 30, (*size, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{wnid}_{k}.JPEG"
            Image.fromarray(pixels).save(path, quality=90)
            out.append((wnid, path))
    return out


def _place(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        os.symlink(src.resolve(), dst)
    else:
        dst.write_bytes(src.read_bytes())


def build_train(root: Path, samples: list[tuple[str, Path]], link: bool = True) -> None:
    counts: dict[str, int] = {}
    for wnid, src in samples:
        k = counts[wnid] = counts.get(wnid, 0) + 1
        _place(src, root / "train" / wnid / f"{wnid}_{k}.JPEG", link)


def val_assignment(samples: list[tuple[str, Path]], seed: int = 0) -> dict[str, tuple[str, Path]]:
    """Val file stem -> (wnid, source): samples in a shuffled order, as in the real val set."""
    order = np.random.default_rng(seed).permutation(len(samples))
    return {f"ILSVRC2012_val_{i + 1:08d}": samples[j] for i, j in enumerate(order)}


def build_val(
    root: Path, samples: list[tuple[str, Path]], layout: str, link: bool = True, seed: int = 0
) -> dict[str, str]:
    """Write val in ``layout`` (folders | kaggle | devkit); return {val file name: wnid}."""
    assignment = val_assignment(samples, seed)
    truth = {}
    for stem, (wnid, src) in assignment.items():
        name = f"{stem}.JPEG"
        _place(src, root / "val" / (wnid if layout == "folders" else "") / name, link)
        truth[name] = wnid
    rng = np.random.default_rng(seed + 1)
    if layout == "kaggle":
        rows = [f"{stem},{wnid} 10 20 100 120 {wnid} 5 5 50 60" for stem, (wnid, _) in assignment.items()]
        rng.shuffle(rows)
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    elif layout == "devkit":
        write_devkit(root / "ILSVRC2012_devkit_t12", [w for w, _ in assignment.values()], rng)
    elif layout != "folders":
        raise ValueError(layout)
    return truth


def write_devkit(devkit: Path, val_wnids: list[str], rng: np.random.Generator) -> dict[str, int]:
    """meta.mat + ground truth like the official devkit: ILSVRC2012_IDs in a shuffled (not sorted
    wnid) order, plus inner WordNet nodes (num_children > 0) that are not classes."""
    from scipy.io import savemat

    wnids = sorted(set(val_wnids))
    ids = rng.permutation(len(wnids)) + 1
    if len(wnids) > 1 and np.all(np.argsort(ids) == np.arange(len(ids))):
        ids = ids[::-1].copy()  # never the sorted order
    id_of = {w: int(i) for w, i in zip(wnids, ids, strict=True)}
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    rows = [(id_of[w], w, f"name of {w}, synonym", "gloss", 0) for w in wnids]
    rows += [(len(wnids) + 1 + k, f"n0{k:08d}", "inner node", "gloss", 3) for k in range(3)]
    rows.sort(key=lambda r: r[0])
    synsets = np.array(rows, dtype=dtype).reshape(-1, 1)
    (devkit / "data").mkdir(parents=True, exist_ok=True)
    savemat(devkit / "data" / "meta.mat", {"synsets": synsets})
    lines = [str(id_of[w]) for w in val_wnids]
    (devkit / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(lines) + "\n")
    return id_of


def age_tree(root: Path, seconds: float = 3600) -> None:
    """Date every folder and file ``seconds`` back: a tree nobody is modifying right now
    (the index cache ignores trees changed in the last 2 s)."""
    when = time.time() - seconds
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
        os.utime(dirpath, (when, when))


def bad_image_bytes() -> dict[str, bytes]:
    """The awkward files of ILSVRC-2012 and of scraped data: name -> content (all named .JPEG)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))

    def encode(image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        image.save(buf, fmt, **kw)
        return buf.getvalue()

    jpeg = encode(rgb, "JPEG", quality=90)
    return {
        "cmyk": encode(rgb.convert("CMYK"), "JPEG", quality=90),
        "grayscale": encode(rgb.convert("L"), "JPEG", quality=90),
        "png": encode(rgb, "PNG"),
        "truncated": jpeg[: len(jpeg) // 2],
        "empty": b"",
    }
