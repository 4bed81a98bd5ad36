"""finetune= strategies: which parameters get gradients, which BatchNorm layers update their statistics,
the LR of each parameter group before and after the unfreeze, and finetune.bn held through .train()."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, TensorDataset

from litvision.lightning_modules.classifier import ImageClassifier
from litvision.lightning_modules.finetune import backbone_parts
from litvision.lightning_modules.training.optimizers import sgd_scaled_vectors
from litvision.utils.errors import ConfigError

PACKAGE = "litvision.lightning_modules.finetune"
BACKBONE = {"_target_": "litvision.lightning_modules.backbones.build_backbone", "name": "small_cnn", "width": 4}
STRATEGIES = {
    "full": {"_target_": f"{PACKAGE}.Full"},
    "linear_probe": {"_target_": f"{PACKAGE}.LinearProbe"},
    "freeze_unfreeze": {"_target_": f"{PACKAGE}.FreezeUnfreeze", "unfreeze_at_epoch": 2, "backbone_lr_ratio": 0.1},
    "layer_decay": {"_target_": f"{PACKAGE}.LayerDecay", "layer_decay": 0.5},
}


def classifier(strategy: str, bn: str | None = None, backbone: dict = BACKBONE, **kwargs) -> ImageClassifier:
    finetune = {**STRATEGIES[strategy], **({"bn": bn} if bn else {})}
    optimizer = kwargs.pop("optimizer", {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9})
    return ImageClassifier(backbone, num_classes=3, finetune=finetune, optimizer=optimizer, **kwargs)


def backbone_bn(model: ImageClassifier) -> list[_BatchNorm]:
    return [m for m in model.net.features.modules() if isinstance(m, _BatchNorm)]


def grads_after_one_step(model: ImageClassifier) -> dict[str, bool]:
    model.train()
    images, targets = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    model.zero_grad(set_to_none=True)
    model.criterion(model(images), targets).backward()
    return {name: p.grad is not None for name, p in model.net.named_parameters()}


def head_input_requires_grad(model: ImageClassifier) -> bool:
    """Does autograd record anything before the head (a backward pass through the backbone)?"""
    seen = []
    handle = model.net.fc.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].requires_grad))
    try:
        grads_after_one_step(model)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    ("strategy", "bn", "backbone_grads", "bn_grads", "backward_through_backbone"),
    [
        ("full", None, True, True, True),
        ("layer_decay", None, True, True, True),
        ("linear_probe", None, False, False, False),  # default bn=freeze: features in eval mode, no backward
        ("linear_probe", "train", False, True, True),  # BatchNorm scale/shift learn: backward through it
        ("freeze_unfreeze", None, False, False, False),  # head only before the unfreeze (bn=freeze_stats)
        ("full", "freeze", True, False, True),
    ],
)
def test_which_parameters_get_gradients(strategy, bn, backbone_grads, bn_grads, backward_through_backbone) -> None:
    model = classifier(strategy, bn)
    bn_names = {f"features.{n}" for n, p in model.net.features.named_parameters() if p.ndim == 1}
    grads = grads_after_one_step(model)
    assert grads["fc.weight"] and grads["fc.bias"]
    convs = [name for name in grads if name.startswith("features.") and name not in bn_names]
    assert {grads[name] for name in convs} == {backbone_grads}
    assert {grads[name] for name in bn_names} == {bn_grads}
    assert head_input_requires_grad(model) is backward_through_backbone


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_frozen_parts_get_no_backward_pass() -> None:
    """requires_grad=False on the whole backbone: autograd never calls backward of any backbone module."""
    calls = []
    for strategy, expected in (("linear_probe", False), ("full", True)):
        model = classifier(strategy)
        calls.clear()
        handles = [
            module.register_full_backward_hook(lambda *args: calls.append(1))
            for module in model.net.features.modules()
            if isinstance(module, nn.Conv2d)
        ]
        grads_after_one_step(model)
        for handle in handles:
            handle.remove()
        assert bool(calls) is expected, strategy


def test_freeze_unfreeze_trains_everything_after_the_unfreeze_except_frozen_batchnorm() -> None:
    model = classifier("freeze_unfreeze", bn="freeze")
    assert model.finetune_strategy.apply(model.net, 1) is False  # still frozen in epoch 1
    assert model.finetune_strategy.apply(model.net, 2) is True  # the unfreeze
    grads = grads_after_one_step(model)
    bn_names = {f"features.{n}" for n, p in model.net.features.named_parameters() if p.ndim == 1}
    assert all(grads[name] for name in grads if name not in bn_names)
    assert not any(grads[name] for name in bn_names)  # bn=freeze: a fixed affine map all run long
    assert all(not m.training for m in backbone_bn(model))  # and in eval mode after the unfreeze too


@pytest.mark.parametrize(("bn", "training"), [("train", True), ("freeze_stats", False), ("freeze", False)])
def test_bn_mode_holds_through_train_calls(bn: str, training: bool) -> None:
    model = classifier("freeze_unfreeze", bn=bn)
    for _ in range(2):
        model.eval()
        model.train()
        assert [m.training for m in backbone_bn(model)] == [training] * len(backbone_bn(model))
    model.finetune_strategy.apply(model.net, 5)  # after the unfreeze
    model.train()
    assert {m.training for m in backbone_bn(model)} == {training}


def lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {group["name"]: group["lr"] for group in optimizer.param_groups}


def built_optimizer(model: ImageClassifier) -> torch.optim.Optimizer:
    optimizer = model.optimizer_factory(model._param_groups())
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
    return optimizer


def test_param_groups_lrs_and_no_decay_split_per_strategy() -> None:
    base = 0.1
    expected = {
        "full": {"all": base},
        "linear_probe": {"head": base},
        "freeze_unfreeze": {"head": base, "backbone": base * 0.1},
    }
    for strategy, groups in expected.items():
        optimizer = built_optimizer(classifier(strategy))
        assert {name.removesuffix("/no_decay"): lr for name, lr in lrs(optimizer).items()} == pytest.approx(groups)
        for group in optimizer.param_groups:  # norms and biases never decayed
            assert all(p.ndim <= 1 for p in group["params"]) == group["name"].endswith("/no_decay"), group["name"]
            assert (group["weight_decay"] == 0.0) or not group["name"].endswith("/no_decay")
    # layer decay: the head at the base LR, each earlier stage x0.5 (timm's semantics)
    model = classifier("layer_decay")
    stages = len(backbone_parts(model.net).stages)
    decayed = lrs(built_optimizer(model))
    assert decayed["head"] == pytest.approx(base)
    assert [decayed[f"stage{i}"] for i in range(stages)] == pytest.approx(
        [base * 0.5 ** (stages - i) for i in range(stages)]
    )


def test_sgd_scaled_vectors_keeps_the_strategys_lr_scales() -> None:
    model = classifier(
        "freeze_unfreeze",
        optimizer={
            "_target_": "litvision.lightning_modules.training.optimizers.sgd_scaled_vectors",
            "lr": 0.2,
            "vector_lr_scale": 4.0,
        },
    )
    got = {
        (g["name"].removesuffix("/no_decay"), g["params"][0].ndim > 1): g["lr"]
        for g in built_optimizer(model).param_groups
    }
    assert got == pytest.approx(
        {("head", True): 0.2, ("head", False): 0.8, ("backbone", True): 0.02, ("backbone", False): 0.08}
    )
    # plain parameters: frozen ones left out, as before
    frozen, trained = nn.Parameter(torch.zeros(2, 2), requires_grad=False), nn.Parameter(torch.zeros(2, 2))
    assert [p for g in sgd_scaled_vectors([frozen, trained], lr=0.1).param_groups for p in g["params"]] == [trained]


def test_every_registry_backbone_has_a_head_and_stages_covering_it() -> None:
    for name in ("small_cnn", "resnet9", "cifar_resnet18", "airbench", "resnet18"):
        model = ImageClassifier(
            {"_target_": BACKBONE["_target_"], "name": name}, num_classes=3, finetune=STRATEGIES["layer_decay"]
        )
        parts = backbone_parts(model.net)
        names = [n for n, _ in model.net.named_parameters()]
        assert sorted(parts.head + parts.backbone) == sorted(names), name
        assert all(n.startswith("fc.") for n in parts.head) and len(parts.stages) >= 4, name
    resnet = backbone_parts(ImageClassifier({"_target_": BACKBONE["_target_"], "name": "resnet50"}, num_classes=3).net)
    # timm's grouping of its ResNets: the stem, then each of the 16 bottleneck blocks
    assert len(resnet.stages) == 17 and resnet.stages[0] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    tta = backbone_parts(
        ImageClassifier({"_target_": BACKBONE["_target_"], "name": "small_cnn", "tta": "flip"}, num_classes=3).net
    )
    assert tta.head == ["net.fc.weight", "net.fc.bias"]


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="finetune.bn=frozen"):
        classifier("full", bn="frozen")
    with pytest.raises(ConfigError, match="finetune.layer_decay"):
        ImageClassifier(BACKBONE, num_classes=3, finetune={**STRATEGIES["layer_decay"], "layer_decay": 1.5})
    with pytest.raises(ConfigError, match="finetune.backbone_lr_ratio"):
        ImageClassifier(BACKBONE, num_classes=3, finetune={**STRATEGIES["freeze_unfreeze"], "backbone_lr_ratio": 0})


class Recorder(L.Callback):
    """Per epoch, at its first batch: the phase, each group's LR, BatchNorm's mode, the trainable count."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            optimizer = trainer.optimizers[0]
            self.epochs[trainer.current_epoch] = {
                "frozen": not pl_module.net.features[0][0].weight.requires_grad,
                "lrs": [round(g["lr"], 10) for g in optimizer.param_groups],
                "bn_training": sorted({m.training for m in backbone_bn(pl_module)}),
                "trainable": pl_module.finetune_strategy.trainable_count(pl_module.net),
            }


def loader(seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(24, 3, 16, 16, generator=generator)
    return DataLoader(TensorDataset(images, torch.arange(24) % 3), batch_size=8)


def fit(
    model: ImageClassifier, epochs: int, ckpt_path: str | None = None, **trainer_kwargs
) -> tuple[L.Trainer, Recorder]:
    recorder = Recorder()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder, *trainer_kwargs.pop("callbacks", [])],
        **({"enable_checkpointing": False} | trainer_kwargs),
    )
    trainer.fit(model, train_dataloaders=loader(), ckpt_path=ckpt_path, weights_only=True)
    return trainer, recorder


WARMUP_COSINE = {"_target_": "litvision.lightning_modules.training.schedulers.warmup_cosine", "warmup_steps": 3}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_freeze_unfreeze_fit_lrs_before_and_after_the_unfreeze(precision: str) -> None:
    """One warm-up + cosine schedule for both groups (backbone at 0.1x the head's LR all along); the
    backbone and its BatchNorm statistics stay as they were until the unfreeze; mixed precision too."""
    model = classifier("freeze_unfreeze", scheduler=WARMUP_COSINE)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    L.seed_everything(0)
    _, recorder = fit(model, 4, precision=precision)
    epochs = recorder.epochs
    assert [epochs[e]["frozen"] for e in range(4)] == [True, True, False, False]
    for epoch in range(4):
        head, head_nd, backbone, backbone_nd = epochs[epoch]["lrs"]
        assert head == head_nd and backbone == backbone_nd
        assert backbone == pytest.approx(0.1 * head)
    assert epochs[3]["lrs"][0] < epochs[2]["lrs"][0] < epochs[1]["lrs"][0]  # cosine decay across the unfreeze
    assert epochs[0]["trainable"] < epochs[2]["trainable"] == sum(p.numel() for p in model.net.parameters())
    assert epochs[0]["bn_training"] == epochs[3]["bn_training"] == [False]  # bn=freeze_stats held by Lightning
    after = model.net.state_dict()
    bn = backbone_bn(model)
    assert all(torch.equal(m.running_mean, before[f"features.{n}.running_mean"]) for n, m in _named_bn(model))
    assert bn and not torch.equal(after["features.0.0.weight"], before["features.0.0.weight"])  # trained later
    assert not torch.equal(after["fc.weight"], before["fc.weight"])


def _named_bn(model: ImageClassifier) -> list[tuple[str, _BatchNorm]]:
    return [(n, m) for n, m in model.net.features.named_modules() if isinstance(m, _BatchNorm)]


@pytest.mark.parametrize(
    ("strategy", "bn", "stats_update", "backbone_changes"),
    [
        ("full", None, True, True),
        ("layer_decay", None, True, True),
        ("linear_probe", None, False, False),
        ("linear_probe", "train", True, False),
        ("full", "freeze_stats", False, True),
    ],
)
def test_which_batchnorm_layers_update_their_statistics(strategy, bn, stats_update, backbone_changes) -> None:
    model = classifier(strategy, bn)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    fit(model, 1)
    after = model.net.state_dict()
    for name, _ in _named_bn(model):
        assert torch.equal(after[f"features.{name}.running_mean"], before[f"features.{name}.running_mean"]) is (
            not stats_update
        ), name
    assert torch.equal(after["features.0.0.weight"], before["features.0.0.weight"]) is (not backbone_changes)
    assert not torch.equal(after["fc.weight"], before["fc.weight"])


class _NoLinearHead(nn.Module):
    """A user's own network (model.backbone._target_=...) whose classifier is a 1x1 convolution."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.classify = nn.Conv2d(4, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.body(x)).mean(dim=(2, 3))


def test_full_trains_a_network_without_a_linear_head() -> None:
    """finetune=full (the default) needs no head: it failed with 'has no linear head to replace'."""
    from litvision.lightning_modules.finetune.strategies import Strategy

    net = _NoLinearHead()
    strategy = Strategy()
    strategy.attach(net)
    grouped = [p for group in strategy.param_groups(net) for p in group["params"]]
    assert len(grouped) == len(list(net.parameters()))
    assert all(p.requires_grad for p in net.parameters())


def test_strategies_that_freeze_need_a_head() -> None:
    from litvision.lightning_modules.finetune.strategies import LinearProbe
    from litvision.utils.errors import DataError

    with pytest.raises(DataError, match="no linear head"):
        LinearProbe().attach(_NoLinearHead())


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_what_the_network_froze_itself_stays_frozen(strategy: str) -> None:
    """airbench fixes its whitening weights (set from data, never learnt); no strategy, phase or unfreeze
    may hand them to the optimizer: finetune=full (the default) used to make them trainable."""
    airbench = {"_target_": BACKBONE["_target_"], "name": "airbench", "widths": [8, 16, 16]}
    model = classifier(strategy, backbone=airbench)
    net, finetune = model.net, model.finetune_strategy
    fixed = net.whiten.weight
    assert not fixed.requires_grad
    for epoch in range(4):  # freeze_unfreeze unfreezes at epoch 2
        finetune.apply(net, epoch)
        assert not fixed.requires_grad, epoch
    assert net.whiten.bias.requires_grad or strategy == "linear_probe"
    grouped = [p for group in finetune.param_groups(net) for p in group["params"]]
    assert not any(p is fixed for p in grouped)
