"""The image-classification LightningModule."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from litvision.lightning_modules.finetune import Full, Strategy
from litvision.lightning_modules.metrics.class_subset import mask_logits, subset_mask
from litvision.lightning_modules.metrics.collections import eval_metrics, flatten_results, train_metrics
from litvision.lightning_modules.plain_config import build_factory, factory_config, is_plain
from litvision.lightning_modules.resume_check import (
    PLAN_KEY,
    check_resume_classes,
    check_resume_steps,
    class_difference,
    plan_record,
    short,
)
from litvision.lightning_modules.training.mixing import BatchMixer, require_soft_target_loss
from litvision.lightning_modules.weights import check_source, ensure_local, load_backbone_weights
from litvision.lightning_modules.weights.sources import backbone_architecture
from litvision.utils.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9}
# what torch.compile's wrapper module (OptimizedModule) adds to every state-dict key
COMPILED_KEY = "._orig_mod."
# the fine-tuning strategy's phase in a checkpoint (lightning_modules/finetune/strategies.py)
FINETUNE_KEY = "litvision_finetune"
# set while a model is rebuilt from a checkpoint (load_classifier, a resume): its weights come
# from the checkpoint, so model.backbone.weights is neither checked nor loaded
_FROM_CHECKPOINT: ContextVar[bool] = ContextVar("litvision_from_checkpoint", default=False)


@contextmanager
def building_from_checkpoint() -> Iterator[None]:
    """Models built inside take their weights from a checkpoint, not from ``model.backbone.weights``."""
    token = _FROM_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _FROM_CHECKPOINT.reset(token)


def check_optimizer(factory: Any, config: Mapping[str, Any]) -> None:
    """Build the optimizer once on a dummy parameter: torch checks lr, momentum, betas... there.

    Turns its ValueError into a one-line ConfigError that names the override to fix, at
    construction time instead of after the data has been loaded.
    """
    try:
        factory([nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as err:
        message = str(err)
        settings = {key: value for key, value in config.items() if not key.startswith("_")}
        named = [key for key, value in settings.items() if _mentions(message, value)] or list(settings)
        overrides = " ".join(f"optimizer.{key}={settings[key]}" for key in named)
        raise ConfigError(
            f"{overrides}: rejected by {config['_target_']} ({message}); set a valid value for "
            + ", ".join(f"optimizer.{key}" for key in named)
        ) from err


def check_backbone(factory: Any, config: Mapping[str, Any]) -> None:
    """Build the backbone once on the meta device (no memory, no compute) to catch an unknown
    name or a misspelt argument at construction rather than after the data has been loaded."""
    try:
        with torch.device("meta"):
            factory(num_classes=2)
    except ConfigError:
        raise
    except TypeError as err:  # e.g. an argument the factory does not take
        settings = {key: value for key, value in config.items() if not key.startswith("_")}
        raise ConfigError(f"model.backbone ({config['_target_']}, {settings}) is invalid: {err}") from err
    except Exception:
        log.debug("backbone dry run on the meta device skipped", exc_info=True)


def _mentions(message: str, value: Any) -> bool:
    """Does torch's message quote this value (e.g. "Invalid learning rate: -0.1")?"""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return re.search(rf"(?<![\d.]){re.escape(str(value))}(?![\d.])", message) is not None


class ImageClassifier(L.LightningModule):
    """Backbone + loss + optimizer/scheduler, with top-k and per-class metrics per split.

    The backbone is built from a factory taking ``num_classes`` so that the number of
    classes, their names and their training counts come from the DataModule rather than
    being repeated in the config. Pass ``num_classes``/``class_names`` to build eagerly
    (plain Python); otherwise ``configure_model`` reads them from ``trainer.datamodule``.
    Either way they are saved in the checkpoint's hyperparameters.

    The four factories are given as configs (``{"_target_": ..., **arguments}``, what Hydra
    passes with the model config's ``_recursive_: false``) or as ``functools.partial`` of an
    importable function with plain arguments; they are stored as plain dicts so that a
    checkpoint loads with ``weights_only=True`` (:mod:`litvision.lightning_modules.plain_config`)
    and are instantiated here.

    Args:
        backbone: factory config, called as ``factory(num_classes=...) -> nn.Module``.
        optimizer: factory config, called as ``factory(params) -> Optimizer``; checked on a
            dummy parameter at construction, so a bad ``optimizer.lr`` fails before any data
            is read. None: SGD(lr=0.1, momentum=0.9).
        scheduler: factory config, called as ``factory(optimizer, total_steps=...) ->
            LRScheduler`` stepped every optimizer step, or None.
        loss: factory config, called as ``factory(class_counts=...) -> nn.Module`` (``loss=``
            config group); None for plain cross-entropy.
        weight_decay_norm_bias: apply weight decay to norm and bias parameters too; False
            (the usual recipe) puts them in a zero-decay group.
        channels_last: use NHWC memory layout for 4-D inputs ("auto": on CUDA and CPU, where
            cuDNN and oneDNN convolutions are faster in NHWC: ~17% per step for ResNet-9 here).
        compile: compile the backbone with ``torch.compile`` when fitting: True, or a dict of
            ``torch.compile`` options (e.g. ``{mode: max-autotune}``). The module is compiled
            in place (``nn.Module.compile``), so checkpoint keys stay ``net.*`` and compiled and
            uncompiled checkpoints load into either; keys written by ``torch.compile``'s
            wrapper (``net._orig_mod.*``) are renamed on load.
        mixing: Mixup/CutMix on training batches on the device (``mixing=`` config group,
            :class:`~litvision.lightning_modules.training.mixing.BatchMixer`); None or empty = off. The
            loss then gets soft targets, and training accuracy is logged as
            ``train/mixed_acc_top1``/``_top5`` (against each mixed image's dominant label,
            not comparable with clean accuracy) instead of ``train/acc_top1``. Training-only,
            so it is left out of the checkpoint's hyperparameters.
        preprocessing: the eval preprocessing the model was trained with
            (:class:`~litvision.utils.preprocessing.Preprocessing` as a dict), recorded by the
            training task so that every checkpoint carries it; eval.py, predict.py and the audit
            apply it. None: not recorded.
        finetune: the fine-tuning strategy (``finetune=`` config group,
            :mod:`~litvision.lightning_modules.finetune`) as a factory config: what trains in which
            epoch, each parameter group's LR scale and BatchNorm's mode in the backbone. None:
            ``full`` (everything trains).

    ``backbone.weights`` (``model.backbone.weights=SOURCE``, any backbone factory): start from
    these weights (:mod:`litvision.lightning_modules.weights`): a .safetensors/.pth/.ckpt file
    or a published name such as ``torchvision:ResNet50_Weights.IMAGENET1K_V2``. Checked at
    construction, loaded once the network is built, when the Trainer configures the model
    (the head is replaced when the classes differ; one log line reports what was loaded), or
    by :meth:`load_backbone_weights`. Not loaded when the model is rebuilt from a checkpoint
    (:func:`building_from_checkpoint`): the checkpoint's weights win.
    """

    def __init__(
        self,
        backbone: Mapping[str, Any] | functools.partial,
        optimizer: Mapping[str, Any] | functools.partial | None = None,
        scheduler: Mapping[str, Any] | functools.partial | None = None,
        loss: Mapping[str, Any] | functools.partial | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        class_counts: Sequence[int] | None = None,
        weight_decay_norm_bias: bool = False,
        channels_last: bool | str = "auto",
        compile: bool | Mapping[str, Any] = False,
        mixing: BatchMixer | Mapping[str, Any] | None = None,
        preprocessing: Mapping[str, Any] | None = None,
        finetune: Mapping[str, Any] | functools.partial | None = None,
    ) -> None:
        super().__init__()
        # plain configs in the hyper-parameters (and so in checkpoints), not pickled callables
        backbone = factory_config(backbone, "backbone")
        if "weights" in backbone and backbone["weights"] is None:
            del backbone["weights"]  # (the config's default) checkpoints of models without weights stay as they were
        if isinstance(preprocessing, DictConfig):
            preprocessing = OmegaConf.to_container(preprocessing, resolve=True)
        if preprocessing is not None and not (isinstance(preprocessing, Mapping) and is_plain(dict(preprocessing))):
            raise ConfigError(f"preprocessing={preprocessing!r}: must be a plain dict (utils/preprocessing.py)")
        optimizer = factory_config(optimizer or DEFAULT_OPTIMIZER, "optimizer")
        scheduler = factory_config(scheduler, "scheduler")
        loss = factory_config(loss, "loss")
        finetune = factory_config(finetune, "finetune")
        if isinstance(compile, DictConfig):
            compile = OmegaConf.to_container(compile, resolve=True)
        if not is_plain(compile):
            raise ConfigError(f"model.compile={compile!r}: must be true/false or a dict of torch.compile options")
        self.save_hyperparameters(logger=False, ignore=["mixing"])
        # the weights to start from stay in the hyper-parameters (where the model came from);
        # the factory is built without them (timm's create_model does not take them)
        network = {key: value for key, value in backbone.items() if key != "weights"}
        self.weights_source = backbone.get("weights") or None
        self._weights_pending = self.weights_source is not None and not _FROM_CHECKPOINT.get()
        if self._weights_pending:
            if network.get("pretrained") is True:
                raise ConfigError(
                    f"model.backbone.pretrained=true and model.backbone.weights={self.weights_source} both ask for "
                    "pretrained weights: keep one (model.backbone.pretrained=false to start from the weights file)"
                )
            check_source(self.weights_source, backbone_architecture(backbone))
        self.backbone_factory = build_factory(network)
        self.optimizer_factory = build_factory(optimizer)
        self.scheduler_factory = build_factory(scheduler)
        self.loss_factory = build_factory(loss)
        self.finetune_strategy: Strategy = build_factory(finetune)() if finetune is not None else Full()
        check_optimizer(self.optimizer_factory, optimizer)
        check_backbone(self.backbone_factory, network)
        if isinstance(mixing, (Mapping, DictConfig)):  # a config (the model config is not recursive)
            mixing = instantiate(mixing) if mixing else None  # mixing=none composes to an empty node
        self.mixing = mixing or None
        self.net: nn.Module | None = None
        self.criterion: nn.Module | None = None
        self._resumed_plan: dict[str, Any] | None = None  # the plan of the checkpoint a fit resumes (resume_check)
        if num_classes is not None or class_names is not None:
            self._build(num_classes, class_names, class_counts)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        trust_checkpoint: bool = False,
        trust_checkpoint_targets: Sequence[str] = (),
        **kwargs: Any,
    ) -> ImageClassifier:
        """Lightning's ``load_from_checkpoint`` through :func:`~litvision.lightning_modules.checkpoints.load_classifier`:
        read with ``weights_only=True`` always, and the file's ``_target_``s checked against what litvision
        builds from a checkpoint (``trust_checkpoint_targets=[...]`` / ``trust_checkpoint=True`` to vouch
        for more). ``kwargs`` replace hyper-parameters of the file (yours, so not checked)."""
        from litvision.lightning_modules.checkpoints import load_classifier

        if hparams_file is not None:
            raise ConfigError("hparams_file: not supported, pass the hyper-parameters to change as keyword arguments")
        if weights_only is False:
            raise ConfigError(
                "weights_only=False: litvision checkpoints always load with weights_only=True; convert an old one "
                "you trust with litvision.lightning_modules.checkpoints.convert_trusted_checkpoint"
            )
        model = load_classifier(
            checkpoint_path,
            map_location or "cpu",
            model_class=cls,
            trust_checkpoint=trust_checkpoint,
            trust_checkpoint_targets=trust_checkpoint_targets,
            overrides=kwargs,
            strict=True if strict is None else strict,
        )
        # as Lightning does: the model on the device the weights were mapped to
        return model.to(map_location) if isinstance(map_location, (str, torch.device)) else model

    # ---- construction ---------------------------------------------------------------
    def configure_model(self) -> None:
        """Build the network once the DataModule has told us about the classes."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if self.net is not None:
            self._check_classes_match(datamodule)
        else:
            if datamodule is None:
                raise RuntimeError("ImageClassifier needs num_classes/class_names or a trainer with a datamodule")
            counts = getattr(datamodule, "train_class_counts", None)
            self._build(datamodule.num_classes, datamodule.class_names, None if counts is None else counts)
        if self._weights_pending:
            self.load_backbone_weights()

    def set_learning_rate(self, lr: float) -> None:
        """Build the optimizer with base LR ``lr`` (``tune.apply``); the hyper-parameters (so checkpoints) record it."""
        optimizer = {**self.hparams.optimizer, "lr": float(lr)}
        self.hparams.optimizer = optimizer
        self.optimizer_factory = build_factory(optimizer)
        check_optimizer(self.optimizer_factory, optimizer)

    def skip_backbone_weights(self) -> None:
        """Do not load ``backbone.weights``: a checkpoint (a resume) will provide every weight."""
        self._weights_pending = False

    def load_backbone_weights(self) -> Any:
        """Load ``backbone.weights`` into the built network now; returns the load report.

        Under several processes, the first process of each machine downloads a published weight
        (into the shared cache) while the others wait, then every process reads the file.
        """
        if self.net is None:
            raise RuntimeError("load_backbone_weights: the network is not built yet (pass num_classes, or fit)")
        if self.weights_source is None:
            raise ConfigError("load_backbone_weights: no model.backbone.weights set")
        architecture = backbone_architecture(self.hparams.backbone)
        source = check_source(self.weights_source, architecture)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and source.published is not None:
            if trainer.local_rank == 0:
                ensure_local(source, progress=trainer.is_global_zero)
            trainer.strategy.barrier("litvision_backbone_weights")
        progress = trainer.is_global_zero if trainer is not None else True
        report = load_backbone_weights(self.net, source, self.class_names, architecture, progress=progress)
        self._weights_pending = False
        return report

    def _check_classes_match(self, datamodule: Any) -> None:
        """A checkpoint evaluated on data with other classes would report silently wrong labels."""
        if datamodule is None or not hasattr(datamodule, "class_names"):
            return
        data_names, model_names = list(datamodule.class_names), list(self.class_names)
        if data_names == model_names:
            return
        raise ConfigError(
            f"{type(datamodule).__name__} does not match the model's classes ({class_difference(data_names, model_names)}; "
            f"the model has {short(model_names)}): evaluate it on the dataset it was trained on (dataset=..., dataset.data_dir=...)"
        )

    def _build(self, num_classes: int | None, class_names: Sequence[str] | None, class_counts: Any) -> None:
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        if num_classes is None:
            num_classes = len(class_names)
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        counts = None if class_counts is None else [int(c) for c in np.asarray(class_counts)]
        # Recorded so that checkpoints are self-describing (eval.py, load_from_checkpoint).
        self.hparams.update(num_classes=num_classes, class_names=list(class_names), class_counts=counts)
        self.class_names = list(class_names)
        self.net = self.backbone_factory(num_classes=num_classes)
        self.finetune_strategy.attach(self.net)  # what the first epoch freezes (a resume: on_load_checkpoint)
        self.criterion = self._make_loss(counts)
        self.train_metrics = train_metrics(num_classes)
        if self.mixing is not None:
            require_soft_target_loss(self.criterion)
            # scored against the dominant label of mixed images: named apart from clean accuracy
            self.train_metrics = self.train_metrics.clone(prefix="train/mixed_")
        self.val_metrics = eval_metrics(num_classes, "val/")
        self.test_metrics = eval_metrics(num_classes, "test/")
        self.val_acc_best = MaxMetric()
        # in the checkpoint, so a resumed run's val/acc_best remembers the epochs before the kill
        self.val_acc_best.persistent(True)
        # val/test loss as torchmetrics (sum of losses, count), summed across ranks at epoch end:
        # exact with unequal DDP shards, where Lightning's sync_dist mean truncates the integer
        # sample count (fabric/utilities/distributed.py::_sync_ddp). NaN kept: it means divergence.
        self.eval_loss = nn.ModuleDict(
            {"val": MeanMetric(nan_strategy="disable"), "test": MeanMetric(nan_strategy="disable")}
        )
        # Last computed per-split results (incl. confusion matrix) for callbacks to visualise.
        self.epoch_results: dict[str, dict[str, Any]] = {}
        # what a test run is reported as: "test/", or "<name>/" for an extra test set (tasks/test_sets.py)
        self.test_prefix = "test/"
        self._test_mask: torch.Tensor | None = None

    def _make_loss(self, counts: list[int] | None) -> nn.Module:
        if self.loss_factory is None:
            return nn.CrossEntropyLoss()
        return self.loss_factory(class_counts=counts)

    # ---- steps ------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._nhwc and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    @property
    def _nhwc(self) -> bool:
        setting = self.hparams.channels_last
        return self.device.type in ("cuda", "cpu") if setting == "auto" else bool(setting)

    def train(self, mode: bool = True) -> ImageClassifier:
        """``nn.Module.train``, with the fine-tuning strategy's BatchNorm mode held (``finetune.bn``):
        Lightning calls ``.train()`` after every validation and at the start of each fit."""
        super().train(mode)
        if mode and self.net is not None:
            self.finetune_strategy.hold_bn(self.net)
        return self

    def on_fit_start(self) -> None:
        self._set_memory_format()
        compile_options = self.hparams.compile
        if compile_options and getattr(self.net, "_compiled_call_impl", None) is None:
            # in place: state-dict keys stay net.* (torch.compile(net) would make them net._orig_mod.*)
            self.net.compile(**(compile_options if isinstance(compile_options, Mapping) else {}))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written by a ``torch.compile``-wrapped backbone load into any model. A resume
        (fitting) of a checkpoint trained on other classes is refused here, before Lightning
        restores anything; its plan is kept for :meth:`configure_optimizers`' check."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if COMPILED_KEY in k]:
            state[key.replace(COMPILED_KEY, ".")] = state.pop(key)
        if self._trainer is not None and self.trainer.state.fn == "fit" and self.net is not None:
            datamodule = self.trainer.datamodule
            name = type(datamodule).__name__ if datamodule is not None else "the training data"
            check_resume_classes(self.trainer.ckpt_path, checkpoint, self.class_names, name)
            self._resumed_plan = checkpoint.get(PLAN_KEY)
            if isinstance(checkpoint.get(FINETUNE_KEY), Mapping):  # the phase (unfrozen or not) it stopped in
                self.finetune_strategy.load_state_dict(self.net, checkpoint[FINETUNE_KEY])

    def on_train_start(self) -> None:
        """A resume with other optimizer steps per epoch is refused before its first step. Checked here,
        once Lightning has restored the loops and built the train loader: asking for the loader's
        length earlier (``configure_optimizers``, ``on_fit_start``) builds the loader before a
        mid-epoch position is restored into it. A resume of a finished fit trains nothing: no check."""
        if self._resumed_plan is not None:
            steps = plan_record(self.trainer)["steps_per_epoch"]
            check_resume_steps(self.trainer.ckpt_path, self._resumed_plan, float("inf") if steps is None else steps)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the run's plan (steps per epoch): a resume on other data is refused (resume_check)."""
        if self._trainer is not None and self.trainer.state.fn == "fit":
            checkpoint[PLAN_KEY] = plan_record(self.trainer)
        checkpoint[FINETUNE_KEY] = self.finetune_strategy.state_dict()

    def on_test_start(self) -> None:
        """Metrics named after the set under test (``test_prefix``); a set covering a subset of the
        classes (ImageNet-R/-A: the DataModule's ``class_subset``) is scored over those classes only."""
        self._set_memory_format()
        if self.test_metrics.prefix != self.test_prefix:
            self.test_metrics = eval_metrics(len(self.class_names), self.test_prefix).to(self.device)
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        self._test_mask = subset_mask(getattr(datamodule, "class_subset", None), len(self.class_names))

    def _set_memory_format(self) -> None:
        if self._nhwc:
            self.net.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        # Losses with a schedule (deferred re-weighting) switch on at a given epoch; this also
        # runs first thing after a resume, at the restored epoch.
        if hasattr(self.criterion, "on_epoch_start"):
            self.criterion.on_epoch_start(self.current_epoch)
        # the fine-tuning phase of this epoch (freeze_unfreeze unfreezes here), with its trainable count
        if self.finetune_strategy.apply(self.net, self.current_epoch):
            log.info("epoch %d: %s", self.current_epoch, self.finetune_strategy.describe(self.net))
        self.log("finetune/trainable_params", float(self.finetune_strategy.trainable_count(self.net)))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        loss_targets = metric_targets = targets
        if self.mixing is not None:
            mixed = self.mixing(images, targets, len(self.class_names))
            images, loss_targets, metric_targets = mixed.images, mixed.targets, mixed.dominant
        logits = self(images)
        loss = self.criterion(logits, loss_targets)
        self.train_metrics.update(logits.detach(), metric_targets)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(targets))
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict({k: float(v) for k, v in self.train_metrics.compute().items()})
        self.train_metrics.reset()

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor | None:
        return self._eval_step(batch, self.val_metrics, "val/loss")

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor | None:
        return self._eval_step(batch, self.test_metrics, f"{self.test_prefix}loss", self._test_mask)

    def _eval_step(self, batch, metrics, loss_key: str, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """Update the split's metrics; returns the (masked) logits, which callbacks get as ``outputs``
        (per-group metrics). ``batch[2]``, when there, is the samples' group codes (``groups=PATH``)."""
        images, targets = batch[0], batch[1]
        if len(targets) == 0:  # every image of this batch was unreadable (on_bad_image=skip)
            return None
        logits = mask_logits(self(images), mask)
        # Plain cross-entropy for val/test loss, so it is comparable across training losses.
        # Per-sample values, unweighted: torchmetrics ignores `weight` with nan_strategy="disable".
        losses = nn.functional.cross_entropy(logits, targets, reduction="none")
        metrics.update(logits, targets)
        loss_metric = self.eval_loss["val" if loss_key.startswith("val/") else "test"]
        loss_metric.update(losses.detach())
        self.log(loss_key, loss_metric, on_step=False, on_epoch=True)  # computed, synced, reset at epoch end
        return logits.detach()

    def on_validation_epoch_end(self) -> None:
        flat = self._epoch_end(self.val_metrics, "val/")
        if self.trainer.sanity_checking:
            return
        self.val_acc_best.update(flat["val/acc_top1"])
        self.log("val/acc_best", float(self.val_acc_best.compute()))

    def on_test_epoch_end(self) -> None:
        self._epoch_end(self.test_metrics, self.test_prefix)

    def _epoch_end(self, metrics, prefix: str) -> dict[str, float]:
        """Compute once (torchmetrics syncs across ranks here), log flat scalars, reset."""
        results = metrics.compute()
        metrics.reset()
        flat = flatten_results(results, prefix, self.class_names, self.hparams.get("class_counts"))
        self.epoch_results[prefix.rstrip("/")] = {"flat": flat, "confmat": results[f"{prefix}confmat"].cpu()}
        self.log_dict(flat)
        return flat

    # ---- optimisation -------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self._param_groups())
        for group in optimizer.param_groups:  # the strategy's LR per group (layer decay, backbone ratio)
            group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _param_groups(self) -> list[dict[str, Any]]:
        """The strategy's groups (every parameter that trains in some epoch, with its ``lr_scale``), each
        split into decay and no-decay (norms and biases: ``weight_decay_norm_bias=false``)."""
        groups = self.finetune_strategy.param_groups(self.net)
        if self.hparams.weight_decay_norm_bias:
            return groups
        split = []
        for group in groups:
            decay = [p for p in group["params"] if p.ndim > 1]
            no_decay = [p for p in group["params"] if p.ndim <= 1]
            split.append({**group, "params": decay})
            split.append({**group, "params": no_decay, "weight_decay": 0.0, "name": f"{group['name']}/no_decay"})
        return [group for group in split if group["params"]]
