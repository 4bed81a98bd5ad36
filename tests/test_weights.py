"""model.backbone.weights=SOURCE: every kind of source, the key layouts both ways, the head rule and the report.

State dicts in torchvision's and timm's layouts are written here by hand from their known key
names (neither library imports here); published weights are served from 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import logging
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from litvision.lightning_modules.backbones import build_backbone
from litvision.lightning_modules.checkpoints import load_classifier
from litvision.lightning_modules.classifier import ImageClassifier
from litvision.lightning_modules.weights import catalog, layouts
from litvision.lightning_modules.weights.catalog import PublishedWeights
from litvision.lightning_modules.weights.export import export_backbone
from litvision.lightning_modules.weights.fetch import cache_dir, url_of
from litvision.lightning_modules.weights.sources import source_preprocessing
from litvision.utils.errors import ConfigError, DataError, MissingDataError
from litvision.utils.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

CLASSES = ["cat", "dog", "fox", "owl", "yak"]
RESNET18 = {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": "resnet18"}


def torchvision_resnet18_shapes(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18's state-dict keys and shapes, from its module names (no BN counters:
    torchvision's published V1 files predate them)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)

    shapes["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    c_in = 64
    for stage, channels in enumerate([64, 128, 256, 512], start=1):
        for block in range(2):
            first = c_in if block == 0 else channels
            shapes[f"layer{stage}.{block}.conv1.weight"] = (channels, first, 3, 3)
            bn(f"layer{stage}.{block}.bn1", channels)
            shapes[f"layer{stage}.{block}.conv2.weight"] = (channels, channels, 3, 3)
            bn(f"layer{stage}.{block}.bn2", channels)
            if block == 0 and stage > 1:
                shapes[f"layer{stage}.{block}.downsample.0.weight"] = (channels, c_in, 1, 1)
                bn(f"layer{stage}.{block}.downsample.1", channels)
        c_in = channels
    shapes["fc.weight"] = (num_classes, 512)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    for key in state:
        if key.endswith("running_var"):
            state[key] = state[key].abs() + 0.5
    return state


def classifier(weights: str | None, classes: list[str] = CLASSES, backbone: dict | None = None) -> ImageClassifier:
    config = dict(backbone or RESNET18)
    if weights is not None:
        config["weights"] = weights
    return ImageClassifier(backbone=config, class_names=classes)


def assert_backbone_is(model: ImageClassifier, state: dict[str, torch.Tensor], skip_head: bool = True) -> None:
    ours = model.net.state_dict()
    for key, value in state.items():
        if skip_head and key.startswith("fc."):
            continue
        assert torch.equal(ours[key], value), key


# ---- local files --------------------------------------------------------------------------
def test_torchvision_layout_pth_loads_and_the_head_is_replaced(tmp_path: Path, caplog) -> None:
    state = random_state(torchvision_resnet18_shapes())
    path = tmp_path / "resnet18-tv.pth"
    torch.save(state, path)
    model = classifier(str(path))
    fresh_head = model.net.fc.weight.detach().clone()
    with caplog.at_level(logging.INFO, logger="litvision"):
        report = model.load_backbone_weights()
    assert_backbone_is(model, state)
    assert torch.equal(model.net.fc.weight, fresh_head)  # the 5-class head stays new
    assert model.net.fc.weight.shape == (5, 512)
    assert report.new == ["fc.weight", "fc.bias"] and report.ignored == ["fc.weight", "fc.bias"]
    assert len(report.loaded) == len(state) - 2
    lines = [r.getMessage() for r in caplog.records if "model.backbone.weights=" in r.getMessage()]
    assert len(lines) == 1
    assert f"loaded {len(state) - 2} tensors" in lines[0] and "1000 classes in the file, 5 here" in lines[0]
    # the BN counters torchvision's V1 files lack are filled in, not reported missing
    assert int(model.net.bn1.num_batches_tracked) == 0


def test_timm_layout_ddp_prefixed_safetensors_with_the_same_classes_loads_the_head(tmp_path: Path) -> None:
    """timm's resnet18 keeps torchvision's names, counters included; a DDP-saved file has module. in front."""
    shapes = torchvision_resnet18_shapes(num_classes=5)
    for key in [k for k in shapes if k.endswith("running_var")]:
        shapes[key.replace("running_var", "num_batches_tracked")] = ()
    state = random_state(shapes)
    state = {k: (v.long() if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
    path = tmp_path / "timm_resnet18.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, str(path))
    model = classifier(str(path))
    report = model.load_backbone_weights()
    assert_backbone_is(model, state, skip_head=False)
    assert report.new == [] and report.ignored == []
    assert len(report.loaded) == len(state)


def test_export_back_to_torchvision_and_timm_layouts(tmp_path: Path) -> None:
    """Ours -> theirs: exactly torchvision's key set (plus the BN counters modern torchvision has too)."""
    model = classifier(None, classes=[str(i) for i in range(1000)])
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt)
    expected = set(torchvision_resnet18_shapes())
    for layout in ("torchvision", "timm"):
        out = export_backbone(ckpt, tmp_path / f"{layout}.safetensors", layout=layout)
        from safetensors.torch import load_file

        exported = load_file(str(out))
        assert {k for k in exported if not k.endswith("num_batches_tracked")} == expected
        assert torch.equal(exported["layer2.0.downsample.0.weight"], model.net.layer2[0].downsample[0].weight)
        pth = tmp_path / f"{layout}.pth"
        out = export_backbone(ckpt, pth, layout=layout)
        assert set(torch.load(pth, weights_only=True)) == set(exported)


def test_litvision_checkpoint_source_takes_its_backbone(tmp_path: Path) -> None:
    """A .ckpt's net.* weights (under TTA: net.net.*), nothing else; other classes -> a new head."""
    donor = ImageClassifier(backbone={**RESNET18, "tta": "flip"}, class_names=["a", "b", "c", "d", "e"])
    ckpt = tmp_path / "donor.ckpt"
    torch.save({"state_dict": donor.state_dict(), "hyper_parameters": dict(donor.hparams)}, ckpt)
    model = classifier(str(ckpt))  # same count (5), other class names
    report = model.load_backbone_weights()
    assert torch.equal(model.net.conv1.weight, donor.net.net.conv1.weight)
    assert report.new == ["fc.weight", "fc.bias"] and "other classes" in report.head_reason
    same = ImageClassifier(backbone=RESNET18 | {"weights": str(ckpt)}, class_names=["a", "b", "c", "d", "e"])
    assert same.load_backbone_weights().new == []
    assert torch.equal(same.net.fc.weight, donor.net.net.fc.weight)


def test_every_registry_backbone_and_timm_take_weights(tmp_path: Path) -> None:
    for name, extra in [("small_cnn", {"width": 8}), ("resnet9", {"width": 8}), ("cifar_resnet18", {"width": 8}),
                        ("airbench", {"widths": [8, 16, 16]})]:  # fmt: skip
        donor = build_backbone(name, num_classes=10, **extra)
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
        config = {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": name, **extra}
        model = classifier(str(path), backbone=config)
        model.load_backbone_weights()
        for key, value in donor.state_dict().items():
            if not key.startswith("fc."):
                assert torch.equal(model.net.state_dict()[key], value), (name, key)
    # model=timm: create_model's calling convention (tests/helpers/timm_like.py), weights not passed to it
    timm_like = {"_target_": "tests.helpers.timm_like.create_model", "model_name": "resnet18", "pretrained": False}
    state = random_state(torchvision_resnet18_shapes())
    torch.save(state, tmp_path / "tv.pth")
    model = classifier(str(tmp_path / "tv.pth"), backbone=timm_like)
    model.load_backbone_weights()
    assert_backbone_is(model, state)
    assert model.hparams.backbone["weights"] == str(tmp_path / "tv.pth")


# ---- refusals -------------------------------------------------------------------------------
class CreatesAFile:
    """Unpickling this would create ``path`` (code run while loading)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 4"])
def test_a_pth_carrying_a_pickle_payload_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "created_by_the_payload"
    payload = {"conv1.weight": torch.zeros(64, 3, 7, 7), "evil": CreatesAFile(marker)}
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    with pytest.raises(DataError) as err:
        classifier(str(path)).load_backbone_weights()
    assert "\n" not in str(err.value) and "pickled Python objects" in str(err.value) and "refused" in str(err.value)
    assert not marker.exists()


def test_what_does_not_fit_is_an_error_naming_the_keys(tmp_path: Path) -> None:
    state = random_state(torchvision_resnet18_shapes())
    missing = dict(state)
    del missing["layer4.1.bn2.running_mean"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(DataError, match=r"missing from the file: layer4\.1\.bn2\.running_mean"):
        classifier(str(tmp_path / "missing.pth")).load_backbone_weights()
    extra = {**state, "layer5.0.conv1.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(DataError, match=r"not in the model: layer5\.0\.conv1\.weight"):
        classifier(str(tmp_path / "extra.pth")).load_backbone_weights()
    shaped = {**state, "conv1.weight": torch.zeros(64, 1, 7, 7)}
    torch.save(shaped, tmp_path / "shaped.pth")
    with pytest.raises(DataError, match=r"other shapes: conv1\.weight \(file 64x1x7x7, model 64x3x7x7\)"):
        classifier(str(tmp_path / "shaped.pth")).load_backbone_weights()
    other_architecture = {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": "small_cnn"}
    with pytest.raises(DataError, match="does not fit the backbone SmallCNN"):
        classifier(str(tmp_path / "missing.pth"), backbone=other_architecture).load_backbone_weights()


def test_bad_sources_are_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="no such file"):
        classifier(str(tmp_path / "absent.safetensors"))
    with pytest.raises(ConfigError, match="unknown file type .txt"):
        (tmp_path / "w.txt").write_text("x")
        classifier(str(tmp_path / "w.txt"))
    with pytest.raises(ConfigError, match="not a torchvision weight litvision knows; known: torchvision:ResNet18"):
        classifier("torchvision:ResNet18_Weights.IMAGENET1K_V9")
    with pytest.raises(ConfigError, match="unknown weight source 'hf-hub'"):
        classifier("hf-hub:timm/resnet18.a1_in1k")
    with pytest.raises(ConfigError, match="weights for resnet50, but the backbone is resnet18: choose model=resnet50"):
        classifier("torchvision:ResNet50_Weights.IMAGENET1K_V2")
    timm_pretrained = {"_target_": "tests.helpers.timm_like.create_model", "model_name": "resnet18", "pretrained": True}
    with pytest.raises(ConfigError, match="pretrained=true and model.backbone.weights=.* both ask"):
        classifier("torchvision:ResNet18_Weights.IMAGENET1K_V1", backbone=timm_pretrained)


def test_a_model_rebuilt_from_its_checkpoint_does_not_need_the_weight_file(tmp_path: Path) -> None:
    state = random_state(torchvision_resnet18_shapes())
    source = tmp_path / "start.pth"
    torch.save(state, source)
    model = classifier(str(source))
    model.load_backbone_weights()
    ckpt = tmp_path / "trained.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt)
    source.unlink()
    restored = load_classifier(ckpt)
    assert torch.equal(restored.net.conv1.weight, model.net.conv1.weight)
    assert restored.hparams.backbone["weights"] == str(source)  # where it started, recorded


# ---- published weights over 127.0.0.1 -------------------------------------------------------
class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served"
    root.mkdir()
    CountingHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/models", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve_resnet18(root: Path, monkeypatch, tmp_path: Path, base: str, tamper: bool = False):
    """A torchvision-layout resnet18 file under torchvision's naming rule (name-<sha256 prefix>.pth),
    registered in place of the real entry (whose hash no test file can have)."""
    state = random_state(torchvision_resnet18_shapes(), seed=3)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / f"resnet18-{prefix}.pth").write_bytes(data + (b"tampered" if tamper else b""))
    name = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    entry = PublishedWeights(
        name, "resnet18", f"resnet18-{prefix}.pth", "torchvision", catalog.PUBLISHED[name].preprocessing
    )
    monkeypatch.setitem(catalog.PUBLISHED, name, entry)
    monkeypatch.setenv("LITVISION_WEIGHTS_URL_BASE", base)
    monkeypatch.setenv("LITVISION_CACHE", str(tmp_path / "cache"))
    return name, entry, state


def test_a_named_torchvision_weight_is_downloaded_once_with_a_progress_bar(
    server, monkeypatch, tmp_path, capsys
) -> None:
    base, root = server
    name, entry, state = serve_resnet18(root, monkeypatch, tmp_path, base)
    model = classifier(name)
    model.load_backbone_weights()
    assert_backbone_is(model, state)
    cached = tmp_path / "cache" / "weights" / entry.file_name
    assert cache_dir() == cached.parent and cached.is_file()
    assert sorted(p.name for p in cached.parent.iterdir()) == [entry.file_name]  # no temp file left
    assert f"Downloading {entry.file_name}" in capsys.readouterr().out  # the progress bar
    assert CountingHandler.requests == [f"/models/{entry.file_name}"]
    again = classifier("torchvision:ResNet18_Weights.DEFAULT")  # torchvision's alias of V1
    again.load_backbone_weights()
    assert_backbone_is(again, state)
    assert len(CountingHandler.requests) == 1  # from the cache


def test_a_download_whose_hash_does_not_match_is_refused_and_not_kept(server, monkeypatch, tmp_path) -> None:
    base, root = server
    name, entry, _ = serve_resnet18(root, monkeypatch, tmp_path, base, tamper=True)
    with pytest.raises(DataError) as err:
        classifier(name).load_backbone_weights()
    message = str(err.value)
    assert "\n" not in message and f"SHA-256 mismatch for {base}/{entry.file_name}" in message
    assert f"expected {entry.sha256_prefix}" in message and "not kept" in message
    folder = tmp_path / "cache" / "weights"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_cached_file_that_no_longer_matches_is_fetched_again(server, monkeypatch, tmp_path) -> None:
    base, root = server
    name, entry, state = serve_resnet18(root, monkeypatch, tmp_path, base)
    cached = tmp_path / "cache" / "weights" / entry.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupt")
    model = classifier(name)
    model.load_backbone_weights()
    assert_backbone_is(model, state)
    assert len(CountingHandler.requests) == 1


def test_the_catalog_is_torchvisions() -> None:
    """Official URLs and hash prefixes (torchvision/models/resnet.py) and their eval transforms."""
    urls = {name: url_of(entry) for name, entry in catalog.PUBLISHED.items()}
    assert urls == {
        "torchvision:ResNet18_Weights.IMAGENET1K_V1": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "torchvision:ResNet50_Weights.IMAGENET1K_V1": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "torchvision:ResNet50_Weights.IMAGENET1K_V2": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    }
    assert catalog.PUBLISHED["torchvision:ResNet50_Weights.IMAGENET1K_V2"].sha256_prefix == "11ad3fa6"
    v2 = source_preprocessing("torchvision:ResNet50_Weights.IMAGENET1K_V2")
    assert v2 == Preprocessing(
        IMAGENET_MEAN, IMAGENET_STD, resolution=224, resize=232, crop=224, interpolation="bilinear"
    )
    assert source_preprocessing("torchvision:ResNet50_Weights.IMAGENET1K_V1").resize == 256
    assert source_preprocessing("torchvision:ResNet18_Weights.DEFAULT").resize == 256


def test_layout_helpers_round_trip() -> None:
    state = {"conv1.weight": torch.zeros(1), "fc.bias": torch.ones(1)}
    assert layouts.from_backbone(layouts.to_backbone(state, "timm"), "timm").keys() == state.keys()
    ckpt_state = {"net.net._orig_mod.conv1.weight": torch.zeros(1), "criterion.weight": torch.ones(1)}
    assert list(layouts.classifier_to_backbone(ckpt_state, tta=True)) == ["conv1.weight"]
