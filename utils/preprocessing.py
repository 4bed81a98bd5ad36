"""The eval preprocessing a model expects, as plain data: what travels with weights and checkpoints.

A published weight (torchvision's ``ResNet50_Weights.IMAGENET1K_V2``), a litvision checkpoint and
a litvision weight export each say how images must be prepared for the network: normalisation
mean/std, the resize of the shorter side, the centre crop, the interpolation, and the
resolution it trains at. :class:`Preprocessing` holds exactly those numbers and strings and
nothing else: a file's record is checked field by field (:meth:`Preprocessing.from_dict`) and
turned into transforms by litvision's own code (``datamodules/transforms/preprocessing.py``),
never by building anything the file names.

It lives here, below both sides, because the model side reads it from weight files and
checkpoints and the data side turns it into transforms (they never import each other).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from litvision.utils.errors import DataError

# names of the interpolations a record may carry (torchvision's InterpolationMode values, lower case)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a network at evaluation time (uint8 RGB in).

    Attributes:
        mean, std: per-channel normalisation of pixel values scaled to [0, 1].
        resolution: the square side the network trains at (None: the images' own size).
        resize: the shorter side images are resized to before the crop (None: no resize).
        crop: the square centre crop taken after the resize (None: no crop).
        interpolation: how the resize samples (one of :data:`INTERPOLATIONS`).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    resolution: int | None = None
    resize: int | None = None
    crop: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (a checkpoint's hyper-parameters, safetensors metadata as JSON)."""
        record = asdict(self)
        record["mean"], record["std"] = list(self.mean), list(self.std)
        return record

    @classmethod
    def from_dict(cls, record: Any, source: str) -> Preprocessing:
        """The record a file carries, checked: anything but the known fields with plain values is a DataError."""
        if not isinstance(record, Mapping):
            raise DataError(f"{source}: its preprocessing record is a {type(record).__name__}, not a mapping")
        known = {field.name for field in fields(cls)}
        unknown = sorted(str(key) for key in record if key not in known)
        missing = sorted(key for key in ("mean", "std") if key not in record)
        if unknown or missing:
            raise DataError(
                f"{source}: its preprocessing record has unknown fields {unknown} or lacks {missing}: "
                f"expected {sorted(known)}"
            )
        values = dict(record)
        for key in ("mean", "std"):
            if not isinstance(values[key], (list, tuple)) or not all(_is_number(v) for v in values[key]):
                raise DataError(f"{source}: preprocessing {key}={values[key]!r} is not a list of numbers")
            values[key] = tuple(float(v) for v in values[key])
        for key in ("resolution", "resize", "crop"):
            value = values.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise DataError(f"{source}: preprocessing {key}={value!r} is not a whole number of pixels or null")
        if not isinstance(values.get("interpolation", "bilinear"), str):
            raise DataError(f"{source}: preprocessing interpolation={values['interpolation']!r} is not a name")
        try:
            return cls(**values)
        except ValueError as err:
            raise DataError(f"{source}: {err}") from err

    def with_changes(self, **changes: Any) -> Preprocessing:
        return replace(self, **changes)

    def differences(self, other: Preprocessing) -> list[str]:
        """``field: mine vs other`` for every field that differs (numbers compared to 1e-4)."""
        found = []
        for field in fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if not _same(mine, theirs):
                found.append(f"{field.name} {_show(mine)} vs {_show(theirs)}")
        return found

    def describe(self) -> str:
        geometry = []
        if self.resize is not None:
            geometry.append(f"resize {self.resize} ({self.interpolation})")
        if self.crop is not None:
            geometry.append(f"crop {self.crop}")
        if self.resolution is not None:
            geometry.append(f"train at {self.resolution}")
        return ", ".join([*geometry, f"mean {_show(self.mean)}", f"std {_show(self.std)}"])


def _problem(record: Preprocessing) -> str | None:
    if not 1 <= len(record.mean) <= 4 or len(record.mean) != len(record.std):
        return f"preprocessing mean {list(record.mean)} and std {list(record.std)} must list 1-4 channels each"
    if not all(math.isfinite(v) for v in (*record.mean, *record.std)) or min(record.std) <= 0:
        return f"preprocessing std {list(record.std)} must be positive (and mean/std finite)"
    for name in ("resolution", "resize", "crop"):
        value = getattr(record, name)
        if value is not None and not 1 <= value <= 8192:
            return f"preprocessing {name}={value} is not a size in pixels (1-8192)"
    if record.interpolation not in INTERPOLATIONS:
        return f"preprocessing interpolation={record.interpolation!r}: expected one of {list(INTERPOLATIONS)}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(abs(x - y) <= 1e-4 for x, y in zip(a, b, strict=True))
    return a == b


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(f"{v:g}" for v in value) + "]"
    return str(value)


def torchvision_eval(crop: int = 224, resize: int = 256, interpolation: str = "bilinear") -> Preprocessing:
    """torchvision's ``ImageClassification`` preset: resize the shorter side, centre crop, ImageNet mean/std."""
    return Preprocessing(
        IMAGENET_MEAN, IMAGENET_STD, resolution=crop, resize=resize, crop=crop, interpolation=interpolation
    )
