"""Labels of ILSVRC-2012 images in the layouts people actually have.

* train: ``ROOT/train/<wnid>/*.JPEG``; class index = position in the sorted wnids (0-999).
* val, one of:
  - ``folders``: ``ROOT/val/<wnid>/*.JPEG`` (after the usual re-organisation script);
  - ``kaggle``: flat ``ROOT/val/*.JPEG`` + ``ROOT/LOC_val_solution.csv``
    (``ImageId,PredictionString``; the first token of PredictionString is the wnid);
  - ``devkit``: flat ``ROOT/val/*.JPEG`` + the official devkit
    ``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per
    image, in file-number order) and ``data/meta.mat`` (ILSVRC2012_ID -> wnid). The ID order is
    NOT the sorted-wnid order: IDs are mapped through the wnid, never used as class indices.
* Kaggle's own download nests the images in ``ROOT/ILSVRC/Data/CLS-LOC/{train,val}``; that
  is found too.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from litvision.utils.errors import DataError

DEVKIT_DIRNAME = "ILSVRC2012_devkit_t12"
DEVKIT_GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "data/meta.mat"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
KAGGLE_IMAGE_ROOT = "ILSVRC/Data/CLS-LOC"
VAL_LAYOUTS = ("auto", "folders", "kaggle", "devkit")


def image_root(data_dir: str | os.PathLike) -> Path:
    """``data_dir`` itself, or Kaggle's nested ``ILSVRC/Data/CLS-LOC`` when that holds the images."""
    data_dir = Path(data_dir)
    nested = data_dir / KAGGLE_IMAGE_ROOT
    if not (data_dir / "train").is_dir() and not (data_dir / "val").is_dir() and nested.is_dir():
        return nested
    return data_dir


def read_kaggle_solution(path: str | os.PathLike) -> dict[str, str]:
    """``{ImageId: wnid}`` from Kaggle's ``LOC_val_solution.csv``."""
    labels: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected the columns ImageId,PredictionString; got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            image_id = row["ImageId"]
            tokens = (row["PredictionString"] or "").split()
            if not tokens:
                raise DataError(f"{path}:{line}: empty PredictionString for {image_id}")
            if image_id in labels and labels[image_id] != tokens[0]:
                # which one is right cannot be known: refuse rather than let one row win silently
                raise DataError(
                    f"{path}:{line}: image {image_id} is labelled {tokens[0]} here but {labels[image_id]} on line "
                    f"{first_line[image_id]}; fix the file (each ImageId once) or point dataset.kaggle_csv at a correct one"
                )
            labels[image_id] = tokens[0]
            first_line.setdefault(image_id, line)
    return labels


def read_devkit(devkit_dir: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """``({val file stem: wnid}, {wnid: readable name})`` from the official ILSVRC-2012 devkit."""
    devkit_dir = Path(devkit_dir)
    id_to_wnid, names = read_devkit_meta(devkit_dir / DEVKIT_META)
    labels: dict[str, str] = {}
    gt_path = devkit_dir / DEVKIT_GROUND_TRUTH
    with open(gt_path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            ilsvrc_id = int(line)
            if ilsvrc_id not in id_to_wnid:
                raise ValueError(f"{gt_path}:{number}: ILSVRC2012_ID {ilsvrc_id} is not a class in {DEVKIT_META}")
            labels[f"ILSVRC2012_val_{number:08d}"] = id_to_wnid[ilsvrc_id]
    return labels, names


def read_devkit_meta(meta_path: str | os.PathLike) -> tuple[dict[int, str], dict[str, str]]:
    """``({ILSVRC2012_ID: wnid}, {wnid: first synonym})`` for the leaf synsets of ``meta.mat``."""
    try:
        from scipy.io import loadmat
    except ImportError as e:  # pragma: no cover - scipy is in the imagenet/dev extras
        raise ImportError("reading the devkit's meta.mat needs scipy: pip install scipy") from e
    synsets = loadmat(meta_path, squeeze_me=True)["synsets"]
    fields = synsets.dtype.names or ()
    if not {"ILSVRC2012_ID", "WNID"} <= set(fields):
        raise ValueError(f"{meta_path}: 'synsets' lacks ILSVRC2012_ID/WNID (fields: {fields})")
    id_to_wnid: dict[int, str] = {}
    names: dict[str, str] = {}
    for synset in synsets.ravel():
        if "num_children" in fields and int(synset["num_children"]) != 0:
            continue  # inner WordNet nodes are not classes
        wnid = str(synset["WNID"])
        id_to_wnid[int(synset["ILSVRC2012_ID"])] = wnid
        if "words" in fields:
            names[wnid] = str(synset["words"]).split(",")[0].strip()
    return id_to_wnid, names


def detect_val_layout(
    val_dir: Path, classes: Sequence[str], kaggle_csv: Path, devkit_dir: Path, layout: str = "auto"
) -> str:
    """Which val layout is present; only stats known paths (no listing), so it is cheap per start."""
    if layout not in VAL_LAYOUTS:
        raise ValueError(f"val_layout must be one of {VAL_LAYOUTS}, got {layout!r}")
    if layout != "auto":
        return layout
    if any((val_dir / c).is_dir() for c in classes):
        return "folders"
    if kaggle_csv.is_file():
        return "kaggle"
    if (devkit_dir / DEVKIT_GROUND_TRUTH).is_file():
        return "devkit"
    raise FileNotFoundError(
        f"cannot tell the labels of {val_dir}. Supported layouts: {val_dir}/<wnid>/*.JPEG; flat "
        f"{val_dir}/*.JPEG with {kaggle_csv} (Kaggle); flat {val_dir}/*.JPEG with the official devkit "
        f"{devkit_dir}/{DEVKIT_GROUND_TRUTH} + {DEVKIT_META} (set dataset.devkit_dir if it is elsewhere)."
    )


def shipped_class_names() -> dict[str, str]:
    """wnid -> readable name for the 1000 ILSVRC-2012 classes (package data)."""
    text = resources.files("litvision.datamodules.readers").joinpath("imagenet_classes.json").read_text()
    return json.loads(text)


def readable_names(wnids: Sequence[str], extra: Mapping[str, str] | None = None) -> list[str]:
    """Readable names for ``wnids``: the shipped table, then ``extra`` (devkit), then the wnid."""
    table = {**(extra or {}), **shipped_class_names()}
    return [table.get(w, w) for w in wnids]
