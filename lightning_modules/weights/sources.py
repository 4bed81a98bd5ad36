"""What ``model.backbone.weights=SOURCE`` names, and reading it into tensors without running code.

SOURCE is a local file or a published weight by name:

* ``*.safetensors`` (preferred: a format that cannot hold code), with litvision's metadata
  (preprocessing, classes) when litvision exported it;
* ``*.pth`` / ``*.pt`` / ``*.bin``: a state dict, read with ``torch.load(weights_only=True)``: a
  file that pickles Python objects (code) is refused in one line, nothing in it is built or called;
* ``*.ckpt``: a litvision checkpoint, read through the safe loader; its backbone weights, classes
  and preprocessing are taken, nothing it names is built;
* ``torchvision:<Enum>.<MEMBER>``: torchvision's published weights for our ResNets
  (:mod:`~litvision.lightning_modules.weights.catalog`), downloaded once into the cache
  (:mod:`~litvision.lightning_modules.weights.fetch`).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from litvision.lightning_modules.weights import layouts
from litvision.lightning_modules.weights.catalog import ALIASES, PUBLISHED, PublishedWeights, published
from litvision.utils.checkpoint_io import UNSAFE_GLOBAL, first_line, load_checkpoint
from litvision.utils.errors import ConfigError, DataError, MissingDataError
from litvision.utils.preprocessing import Preprocessing

KEY = "model.backbone.weights"
# what torch's weights_only unpickler raised, after its generic advice
UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
CHECKPOINT_SUFFIXES = (".ckpt",)
# safetensors metadata keys litvision writes (lightning_modules/weights/export.py)
META_PREPROCESSING = "litvision.preprocessing"
META_CLASS_NAMES = "litvision.class_names"
META_ARCHITECTURE = "litvision.architecture"
META_LAYOUT = "litvision.layout"


@dataclass(frozen=True)
class WeightSource:
    """A parsed SOURCE: ``kind`` is published | safetensors | torch | ckpt."""

    text: str
    kind: str
    path: Path | None = None
    published: PublishedWeights | None = None

    @property
    def label(self) -> str:
        return f"{KEY}={self.text}"


@dataclass
class WeightFile:
    """What a source holds, read: the backbone's tensors (in our key layout) and what it says about them."""

    state: dict[str, torch.Tensor]
    preprocessing: Preprocessing | None = None
    class_names: list[str] | None = None
    architecture: str | None = None


def parse_source(text: Any) -> WeightSource:
    """SOURCE -> :class:`WeightSource`; one-line ConfigError/MissingDataError for what cannot be one."""
    if not isinstance(text, (str, Path)) or not str(text).strip():
        raise ConfigError(f"{KEY}={text!r}: pass a weight file (.safetensors, .pth, .ckpt) or a name like {_example()}")
    text = str(text).strip()
    scheme, sep, _ = text.partition(":")
    if sep and len(scheme) > 1 and "/" not in scheme and "\\" not in scheme:  # not C:\..., not a path
        if scheme != "torchvision":
            raise ConfigError(f"{KEY}={text}: unknown weight source {scheme!r}; use {_example()} or a local file")
        entry = published(text)
        if entry is None:
            raise ConfigError(f"{KEY}={text}: not a torchvision weight litvision knows; known: {_known_names()}")
        return WeightSource(text, "published", published=entry)
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        kind = "safetensors"
    elif suffix in TORCH_SUFFIXES:
        kind = "torch"
    elif suffix in CHECKPOINT_SUFFIXES:
        kind = "ckpt"
    else:
        raise ConfigError(
            f"{KEY}={text}: unknown file type {suffix or '(none)'}; pass a .safetensors, .pth/.pt/.bin or a "
            f"litvision .ckpt file, or a name like {_example()}"
        )
    if not path.is_file():
        raise MissingDataError(f"{KEY}={text}: no such file")
    return WeightSource(text, kind, path=path)


def check_source(text: Any, architecture: str | None) -> WeightSource:
    """Parse SOURCE and check a published weight is for ``architecture`` (before any data is read)."""
    source = parse_source(text)
    entry = source.published
    if entry is not None and architecture is not None and architecture != entry.architecture:
        raise ConfigError(
            f"{source.label}: these are weights for {entry.architecture}, but the backbone is {architecture}: "
            f"choose model={entry.architecture} (or weights for {architecture})"
        )
    return source


def ensure_local(source: WeightSource, progress: bool = True) -> Path:
    """The file behind ``source``, a published weight downloaded into the cache first."""
    if source.published is not None:
        from litvision.lightning_modules.weights.fetch import fetch

        return fetch(source.published, progress=progress)
    assert source.path is not None
    return source.path


def source_preprocessing(text: Any) -> Preprocessing | None:
    """The eval preprocessing a source carries (None for a plain state dict); reads no tensors it can avoid."""
    source = parse_source(text)
    if source.published is not None:
        return source.published.preprocessing
    if source.kind == "safetensors":
        return _metadata_file(source).preprocessing
    if source.kind == "ckpt":
        return _checkpoint_record(source, load_checkpoint(ensure_local(source), key=KEY))[0]
    return None


def read_source(source: WeightSource, progress: bool = True) -> WeightFile:
    """Read the tensors of ``source`` (downloading a published weight once) in our backbone key layout."""
    path = ensure_local(source, progress=progress)
    if source.published is not None or source.kind == "torch":
        return _read_torch(source, path, layout="torchvision")
    if source.kind == "safetensors":
        return _read_safetensors(source)
    return _read_checkpoint(source, load_checkpoint(path, key=KEY))


# ---- readers ----------------------------------------------------------------------------
def _read_torch(source: WeightSource, path: Path, layout: str) -> WeightFile:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's safe unpickler refused something: a global it does not allow (code), or an opcode
        found = UNSAFE_GLOBAL.search(str(err)) or UNPICKLER_ERROR.search(str(err))
        what = found.group(1).strip() if found else first_line(err)
        raise DataError(
            f"{source.label} holds pickled Python objects ({what}), so loading it could run code: refused, nothing "
            "in it was built or called. Ask for the weights as .safetensors, or as a state dict of tensors "
            "(torch.save(model.state_dict(), ...))"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise DataError(f"{source.label}: not a readable torch file ({first_line(err)})") from err
    if isinstance(loaded, Mapping) and isinstance(loaded.get("hyper_parameters"), Mapping):
        return _read_checkpoint(source, dict(loaded))  # a litvision checkpoint under another suffix
    state = _tensors(source, loaded)
    published_preprocessing = source.published.preprocessing if source.published is not None else None
    architecture = source.published.architecture if source.published is not None else None
    return WeightFile(layouts.to_backbone(state, layout), published_preprocessing, None, architecture)


def _tensors(source: WeightSource, loaded: Any) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict, also when nested under ``state_dict``/``model`` (training checkpoints)."""
    if isinstance(loaded, Mapping) and not _all_tensors(loaded):
        nested = [key for key in ("state_dict", "model", "module") if isinstance(loaded.get(key), Mapping)]
        if nested:
            loaded = loaded[nested[0]]
    if not isinstance(loaded, Mapping) or not loaded or not _all_tensors(loaded):
        what = type(loaded).__name__ if not isinstance(loaded, Mapping) else "a mapping with non-tensor values"
        raise DataError(f"{source.label} holds {what}, not a state dict of tensors")
    return {str(key): value for key, value in loaded.items()}


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in mapping.items())


def _safe_open(source: WeightSource):
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(source.path), framework="pt", device="cpu")
    except (SafetensorError, OSError) as err:
        raise DataError(f"{source.label}: not a readable safetensors file ({first_line(err)})") from err


def _metadata_file(source: WeightSource) -> WeightFile:
    with _safe_open(source) as handle:
        return _with_metadata(source, {}, handle.metadata() or {})


def _read_safetensors(source: WeightSource) -> WeightFile:
    with _safe_open(source) as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata() or {}
    layout = metadata.get(META_LAYOUT, "torchvision")
    if layout == "litvision":
        layout = "torchvision"  # our export writes backbone keys; the classifier's net. prefix is not in it
    return _with_metadata(source, layouts.to_backbone(state, layout), metadata)


def _with_metadata(source: WeightSource, state: dict[str, torch.Tensor], metadata: Mapping[str, str]) -> WeightFile:
    """Parse litvision's safetensors metadata (JSON strings of plain values; checked, never executed)."""
    preprocessing = class_names = None
    if META_PREPROCESSING in metadata:
        preprocessing = Preprocessing.from_dict(_json(source, metadata, META_PREPROCESSING), source.label)
    if META_CLASS_NAMES in metadata:
        class_names = _json(source, metadata, META_CLASS_NAMES)
        if not isinstance(class_names, list) or not all(isinstance(name, str) for name in class_names):
            raise DataError(f"{source.label}: metadata {META_CLASS_NAMES} is not a list of names")
    architecture = metadata.get(META_ARCHITECTURE)
    return WeightFile(state, preprocessing, class_names, architecture)


def _json(source: WeightSource, metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except (TypeError, ValueError) as err:
        raise DataError(f"{source.label}: metadata {key} is not JSON ({err})") from err


def _checkpoint_record(source: WeightSource, checkpoint: Mapping[str, Any]):
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise DataError(f"{source.label} is not a litvision model checkpoint (no state_dict/hyper_parameters)")
    record = hparams.get("preprocessing")
    preprocessing = Preprocessing.from_dict(record, source.label) if record is not None else None
    names = hparams.get("class_names")
    class_names = [str(name) for name in names] if isinstance(names, (list, tuple)) else None
    backbone = hparams.get("backbone")
    backbone = backbone if isinstance(backbone, Mapping) else {}
    return preprocessing, class_names, backbone_architecture(backbone), backbone


def _read_checkpoint(source: WeightSource, checkpoint: Mapping[str, Any]) -> WeightFile:
    preprocessing, class_names, architecture, backbone = _checkpoint_record(source, checkpoint)
    tta = backbone.get("tta") not in (None, "none")
    state = layouts.classifier_to_backbone(checkpoint["state_dict"], tta=tta)
    if not state:
        raise DataError(f"{source.label}: its state_dict has no backbone (net.*) weights")
    return WeightFile(state, preprocessing, class_names, architecture)


def backbone_architecture(config: Mapping[str, Any]) -> str | None:
    """The architecture a backbone config builds: the registry's ``name`` or timm's ``model_name``."""
    target = str(config.get("_target_", ""))
    if target.endswith("create_model"):  # timm's, directly or through backbones/timm_models.py
        name = config.get("model_name") or (config.get("_args_") or [None])[0]
    else:
        name = config.get("name")
    return str(name) if isinstance(name, str) else None


def _example() -> str:
    return "torchvision:ResNet50_Weights.IMAGENET1K_V2"


def _known_names() -> str:
    return ", ".join([*PUBLISHED, *ALIASES])
