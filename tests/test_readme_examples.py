"""Every command in the ```bash blocks of README.md and of the docs site (docs/**/*.md) works: the docs stay true.

The commands are read from those files, so a new example is checked without touching this file.
- Default suite: each ``train.py``/``eval.py``/``predict.py`` example is composed and resolved with Hydra (a
  sweep at its first point), including the launcher and sweeper settings, in this process.
- ``-m slow``: each example that can run on this machine runs as a user would (a subprocess
  in a temp dir), shrunk: generated data, one epoch of 2 batches, small images, CSV logging,
  2 Optuna trials. A sweep keeps its own sweep dir (none is added): the default one, under the
  temp working dir, must work as written. Examples that need a GPU or SLURM must be listed in COMPOSE_ONLY (the
  default suite checks that the list is right); other commands that cannot run inside a
  test are listed in NOT_RUN with the reason.
The Architecture page (docs/architecture.md) is checked too: every package folder (subpackages included)
is in its table; and every repository path README.md or a docs page names exists.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.repo_layout import documented_folders
from tests.helpers.run_helpers import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
ARCHITECTURE = DOCS / "architecture.md"
CI_SCRIPT = REPO_ROOT / ".ci" / "run"

# Steps (a command split at ` && `) that are not run here, and why.
NOT_RUN = {
    "python3 -m venv .venv": "creates the environment these tests run in (CI: .ci/run)",
    ". .venv/bin/activate": "activates that environment",
    "pip install torch==2.13.0": "installing PyTorch: minutes and network; this environment has it",
    "pip install -q torch==2.13.0": "installing PyTorch: minutes and network; this environment has it",
    "pip install -e .": "the install of this checkout, already done for the tests to run",
    "pip install -q -e .[dev]": "the install of this checkout, already done for the tests to run",
    "python -m pytest": "the test suite itself",
    "python -m pytest -m slow tests/test_resume.py": "the test suite itself",
    "python -m pytest tests/test_ddp.py tests/test_multirun.py tests/test_optuna.py tests/test_submitit.py tests/test_resume.py": "the test suite itself",
    "python -m pytest -m slow tests/test_multirun.py tests/test_submitit.py tests/test_resume.py": "the test suite itself",
    "litvision-train --config-dir ./myconf dataset=mydata trainer=ddp_sim": "needs the user's myconf/ files: tests/test_wheel_install.py runs this from an installed wheel",
    "litvision-eval --config-dir ./myconf dataset=mydata ckpt_path=RUN_DIR/checkpoints/last.ckpt": "needs the user's myconf/ files and a run: tests/test_wheel_install.py runs this from an installed wheel",
    "python audit.py experiment=cifar10_cpu dataset.data_dir=../shared/data/cifar10-subset audit.sections=[label_errors]": "minutes of cross-fitting on the real subset: tests/test_audit_label_errors.py runs it (slow)",
    "python audit.py dataset=imagenet dataset.data_dir=/data/imagenet audit.sections=[balance,health,duplicates] "
    "audit.num_workers=16": "needs ImageNet: tests/test_audit_health.py and test_audit_duplicates.py run these sections",
    "python audit.py dataset.data_dir=../shared/data/cifar10-subset audit.write_exclusions=true": "minutes of cross-fitting on the real subset: tests/test_audit_report.py runs the whole audit on small data",
    "python audit.py -m audit.fold=0,1,2 audit.folds_dir=/shared/audit_folds audit.sections=[label_errors] "
    "hydra/launcher=slurm trainer=gpu": "needs SLURM and GPUs: tests/test_audit_label_errors.py runs folds as a multirun",
    "python audit.py audit.folds_dir=/shared/audit_folds trainer=gpu": "needs a GPU and the folds above: tests/test_audit_label_errors.py merges a multirun's folds",
    "python train.py dataset=class_folder dataset.data_dir=photos model=resnet50 "
    "model.backbone.weights=torchvision:ResNet50_Weights.IMAGENET1K_V2 optimizer=adamw optimizer.lr=3e-4 "
    "trainer.max_epochs=10": "downloads torchvision's weights (no internet here): tests/test_weights.py serves them on "
    "127.0.0.1, tests/test_preprocessing.py runs the chain on small data",
    "python eval.py ckpt_path=RUN/checkpoints/best.ckpt dataset=imagenet_v2 dataset.data_dir=/data/imagenetv2 "
    "dataset.variant=matched-frequency": "needs ImageNet-V2 (no download here): tests/test_shifted_sets.py reads "
    "generated files in its layout",
    "python eval.py ckpt_path=RUN/checkpoints/best.ckpt dataset=imagenet dataset.data_dir=/data/imagenet "
    "test_sets=[imagenet_r,imagenet_a,imagenet_sketch] test_sets.imagenet_r.data_dir=/data/imagenet-r "
    "test_sets.imagenet_a.data_dir=/data/imagenet-a test_sets.imagenet_sketch.data_dir=/data/sketch": "needs ImageNet "
    "and its shifted sets: tests/test_shifted_sets.py and test_shifted_runs.py (ImageNet-A through trainer.test) cover them",
    "python -m litvision.datamodules.readers.group_file photos --pattern _(day|night)[.] --out groups.csv": "needs a "
    "photos/ folder: tests/test_group_metrics.py runs the helper on a generated one",
    "python audit.py dataset=class_folder dataset.data_dir=ROOT audit.label_errors.method=features model=resnet50 "
    "model.backbone.weights=torchvision:ResNet50_Weights.IMAGENET1K_V2": "needs a photo folder and downloads "
    "torchvision's weights: tests/test_audit_features.py runs method=features with weights served from a file",
    "python audit.py experiment=cifar10_cpu dataset.data_dir=DATA audit.label_errors.method=features "
    "audit.ckpt_path=other.ckpt": "needs a checkpoint: tests/test_audit_features.py trains one and runs this",
    "mkdocs build --strict": "builds the docs site: tests/test_docs.py runs it (from a copy of the checkout)",
    "mkdocs serve": "serves the docs site until stopped: tests/test_docs.py builds the same site",
    "python prepare_shards.py dataset=imagenet dataset.data_dir=/data/imagenet out=/data/imagenet-shards": "needs ImageNet: tests/test_shards.py (the writer) and tests/test_shards_imagenet.py (the script, slow) cover it",
}
# Examples checked by composition only (default suite), never run, and why.
COMPOSE_ONLY = {
    "python train.py experiment=cifar10_resnet18 trainer=gpu": "needs a GPU",
    "python train.py dataset=imagenet dataset.data_dir=/data/imagenet trainer=gpu": "needs a GPU",
    "python train.py experiment=imagenet_resnet50 dataset.data_dir=/data/imagenet trainer=ddp": "needs GPUs",
    "python train.py experiment=cifar10_resnet18 trainer=ddp trainer.devices=4": "needs 4 GPUs",
    "python train.py -m hydra/launcher=slurm trainer=multinode trainer.num_nodes=2 trainer.devices=8 "
    "hydra.launcher.partition=gpu hydra.launcher.timeout_min=1440 hydra.launcher.cpus_per_task=10 "
    "experiment=cifar10_resnet18 ckpt_path=last": "needs SLURM and GPUs (the sbatch script: tests/test_submitit.py)",
    "srun python train.py trainer=multinode trainer.num_nodes=2 trainer.devices=8 ckpt_path=last": "needs SLURM and 16 GPUs",
    "python train.py hparams_search=cifar10_optuna hydra.sweeper.n_trials=50 hydra.sweeper.n_jobs=8 hydra/launcher=slurm ...": "needs SLURM (the sbatch script: tests/test_submitit.py)",
    "python train.py experiment=imagenet_resnet50_v2 dataset.data_dir=/data/imagenet trainer=ddp trainer.devices=8": "needs 8 GPUs",
    "python predict.py ckpt_path=... dataset=imagenet dataset.data_dir=/data/imagenet split=source_val trainer=ddp": "needs GPUs",
    "python train.py experiment=cifar10_fast trainer=gpu": "needs a GPU",
    "python train.py dataset=imagenet_shards dataset.shards=/data/imagenet-shards trainer=multinode trainer.num_nodes=4": "needs 4 GPU nodes and a shard set (tests/test_shards_imagenet.py trains from shards, slow)",
}
# entry script -> its Hydra config (conf/<name>.yaml)
ENTRY_SCRIPTS = {
    "train.py": "train",
    "eval.py": "eval",
    "predict.py": "predict",
    "litvision-train": "train",
    "litvision-eval": "eval",
    "litvision-predict": "predict",
}


# ---- reading the README and the docs -----------------------------------------------------------
def doc_files() -> list[Path]:
    """README.md and every page of the docs site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S)


def readme_commands(path: Path = README) -> list[str]:
    """Each command line of a file's ```bash blocks as written: continuations joined, comments dropped."""
    commands = []
    for block in bash_blocks(path):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line.strip())  # a trailing "   # what it does"
            if line and not line.startswith("#"):  # "#SBATCH ..." lines are sbatch directives
                commands.append(line)
    return commands


def _normal(step: str) -> str:
    """A step as the shell reads it (quotes removed, whitespace collapsed): the key of NOT_RUN/COMPOSE_ONLY."""
    return " ".join(shlex.split(step, comments=True))


def readme_steps() -> list[str]:
    """Every step of README.md's and the docs' commands, each once (the docs repeat the README's), in order."""
    steps = [
        _normal(step) for path in doc_files() for command in readme_commands(path) for step in command.split(" && ")
    ]
    return list(dict.fromkeys(steps))


@dataclass
class Example:
    """One README invocation of an entry script."""

    text: str  # the step as written (normalised whitespace): the key of COMPOSE_ONLY
    config_name: str  # train | eval
    flags: list[str]  # -m, --cfg job, ...
    overrides: list[str]

    @property
    def multirun(self) -> bool:
        return (
            "-m" in self.flags
            or "--multirun" in self.flags
            or any(o.startswith("hparams_search=") for o in self.overrides)
        )


def parse_example(step: str) -> Example | None:
    words = shlex.split(step, comments=True)
    if words[:1] == ["srun"]:
        words = words[1:]
    if words[:1] in (["python"], ["python3"]) and len(words) > 1:
        words = words[1:]
    if not words or Path(words[0]).name not in ENTRY_SCRIPTS:
        return None
    flags, overrides = [], []
    rest = iter(words[1:])
    for word in rest:
        if word == "...":  # "and your other overrides"
            continue
        if word in ("--cfg", "-c", "--config-dir", "-cd", "--config-name", "-cn", "--info"):
            flags += [word, next(rest)]
        elif word.startswith("-"):
            flags.append(word)
        else:
            overrides.append(word)
    return Example(_normal(step), ENTRY_SCRIPTS[Path(words[0]).name], flags, overrides)


def readme_examples() -> list[Example]:
    return [example for step in readme_steps() if step not in NOT_RUN and (example := parse_example(step)) is not None]


EXAMPLES = readme_examples()


def first_point(overrides: list[str]) -> list[str]:
    """A sweep's first job: ``a=1,2`` -> ``a=1``, ``choice(x,y)`` -> ``x``."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [
        f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}" if o.is_sweep_override() else text
        for o, text in zip(parsed, overrides, strict=True)
    ]


def compose_example(example: Example, output_dir: Path) -> dict:
    """The example's job config, resolved (plus hydra.launcher and hydra.sweeper), as the CLI would compose it."""
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(example.config_name, overrides=first_point(example.overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)  # set by a real run; ${hydra:runtime.output_dir}
        HydraConfig.instance().set_config(cfg)
        job = {
            key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in cfg
            if key != "hydra"
        }
        return {
            **job,
            "hydra": {
                "launcher": OmegaConf.to_container(cfg.hydra.launcher, resolve=True),
                "sweeper": OmegaConf.to_container(cfg.hydra.sweeper, resolve=True),
            },
        }


def needs_gpu_or_slurm(composed: dict) -> bool:
    uses_gpu = str(composed["trainer"].get("accelerator")) in ("gpu", "cuda")
    return uses_gpu or "Slurm" in str(composed["hydra"]["launcher"].get("_target_", ""))


# ---- default suite ---------------------------------------------------------------------------
def test_ci_runs_readme_command_2_verbatim() -> None:
    install_and_test = [c for c in readme_commands() if c.startswith("python3 -m venv") and "pytest" in c]
    assert len(install_and_test) == 1
    ci_lines = CI_SCRIPT.read_text().splitlines()
    assert ci_lines[-1] == install_and_test[0]  # verbatim
    assert "python -m pytest -m slow tests/test_resume.py" in ci_lines[-1]  # the bit-exact resume runs in CI


def test_every_readme_command_is_checked_or_listed() -> None:
    steps = readme_steps()
    unknown = [s for s in steps if parse_example(s) is None and s not in NOT_RUN]
    assert not unknown, f"README/docs commands neither run by this test nor listed in NOT_RUN with a reason: {unknown}"
    stale = [s for s in [*NOT_RUN, *COMPOSE_ONLY] if s not in steps]
    assert not stale, f"listed here but no longer in README.md or docs/: {stale}"
    assert len(EXAMPLES) >= 20  # the parser still finds the README's examples


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.text for e in EXAMPLES])
def test_readme_example_composes(example: Example, tmp_path: Path) -> None:
    composed = compose_example(example, tmp_path)
    assert composed["dataset"]["_target_"].startswith("litvision.")
    assert needs_gpu_or_slurm(composed) == (example.text in COMPOSE_ONLY), (
        "an example that needs a GPU or SLURM must be in COMPOSE_ONLY (with the reason), and only those"
    )


def test_docs_front_page_starts_with_the_readme_commands() -> None:
    """docs/index.md shows the README's two commands (install + train, install + test) exactly."""
    assert bash_blocks(DOCS / "index.md")[:2] == bash_blocks(README)[:2]


def test_architecture_table_names_every_folder_and_paths_exist() -> None:
    text = ARCHITECTURE.read_text()
    table = text[text.index("## What each folder holds") :]
    listed = set(re.findall(r"^\| `([\w/]+)/` \|", table, flags=re.M))
    folders = {p.relative_to(REPO_ROOT).as_posix() for p in documented_folders(REPO_ROOT)}
    assert listed == folders, (
        f"docs/architecture.md table vs folders: missing {folders - listed}, gone {listed - folders}"
    )
    # every repository path named in backticks exists (conf/..., launch/ddp_relaunch.py, tests/test_x.py, ...)
    tops = "|".join(sorted({folder.split("/")[0] for folder in folders} | {".ci"}))
    for path in doc_files():
        named = set(re.findall(rf"`((?:{tops})/[\w./-]*?)`", path.read_text()))
        missing = sorted(name for name in named if not (REPO_ROOT / name).exists())
        assert not missing, f"{path.relative_to(REPO_ROOT)} names paths that do not exist: {missing}"


def test_readme_links_resolve() -> None:
    """README.md's relative links (into docs/, to BENCHMARKS.md) point at files that exist, as GitHub shows them."""
    targets = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    relative = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
    assert relative, "README.md links into the docs"
    missing = sorted(t for t in relative if not (REPO_ROOT / t).exists())
    assert not missing, f"README.md links to files that do not exist: {missing}"


# ---- slow: run them ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def readme_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CIFAR-format data big enough for the long-tail examples (IF=100 keeps >= 1 image per class),
    and a small ImageNet-style tree."""
    from litvision.datamodules.readers.shifted_sets import CORRUPTIONS
    from tests.helpers.imagenet_trees import age_tree, build_train, build_val, generated_samples
    from tests.helpers.shifted_files import write_cifar10_1, write_cifar10_c

    root = tmp_path_factory.mktemp("readme_data")
    write_fake_cifar(root / "cifar", n_train_per_class=120, n_test_per_class=5, seed=0)
    write_cifar10_1(root / "cifar10_1", "v6")  # docs/robustness.md: the shifted sets, in their published layouts
    write_cifar10_c(root / "cifar10_c", CORRUPTIONS)
    (root / "groups.csv").write_text(
        "id,group\n" + "".join(f"test/{i},{i % 3}\ntrain/{i},{i % 3}\n" for i in range(1200))
    )
    samples = generated_samples(root / "jpegs", num_classes=6, per_class=12, size=(72, 96))
    build_train(root / "imagenet", samples)
    build_val(root / "imagenet", samples[::4], "folders")
    age_tree(root / "imagenet")
    return {
        "cifar": root / "cifar",
        "imagenet": root / "imagenet",
        "images": root / "jpegs",
        "cifar10_1": root / "cifar10_1",
        "cifar10_c": root / "cifar10_c",
        "groups": root / "groups.csv",
    }


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{shlex.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


class TinyCheckpoints(dict):
    """Data kind -> a checkpoint trained on that data (for eval/predict examples), trained on first use."""

    def __init__(self, data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.data, self.tmp_path_factory = data, tmp_path_factory

    def __missing__(self, kind: str) -> Path:
        run = self.tmp_path_factory.mktemp(f"ckpt_{kind}")
        dataset = ["dataset=imagenet", "augmentation.resolution=64"] if kind == "imagenet" else []
        _run(
            [
                str(REPO_ROOT / "train.py"),
                *dataset,
                f"dataset.data_dir={self.data[kind]}",
                "model=small_cnn",
                "model.backbone.width=8",
                "dataset.num_workers=0",
                "dataset.batch_size=24",
                "trainer.max_epochs=1",
                "++trainer.limit_train_batches=2",
                "logger=csv",
                f"hydra.run.dir={run}",
            ],
            run,
        )
        self[kind] = next((run / "checkpoints").glob("best*.ckpt"))
        return self[kind]


@pytest.fixture(scope="module")
def readme_checkpoints(readme_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoints:
    return TinyCheckpoints(readme_data, tmp_path_factory)


def _set(overrides: list[str], key: str, value: str, force: bool = True) -> list[str]:
    """Replace ``key=...`` (any +/++ prefix) or append it; with force=False keep the example's own value."""
    same = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key.lstrip("+")]
    if same and not force:
        return overrides
    return [o for o in overrides if o not in same] + [f"{key}={value}"]


def shrunk(
    example: Example, composed: dict, data: dict[str, Path], checkpoints: dict[str, Path], tmp: Path
) -> list[str]:
    """The example's own overrides, made to run in seconds on generated data."""
    target = composed["dataset"]["_target_"].lower()
    kind = "imagenet" if "imagenet" in target or "class_folder" in target else "cifar"  # a tree of class folders
    imagenet = kind == "imagenet"
    overrides = list(example.overrides)
    if "ckpt_path" in composed and example.config_name != "train":  # eval/predict: a checkpoint for this data
        overrides = _set(overrides, "ckpt_path", str(checkpoints[kind]))
    if composed.get("images"):
        overrides = _set(overrides, "images", str(data["images"]))
    if composed.get("groups"):
        overrides = _set(overrides, "groups", str(data["groups"]))
    for name in composed.get("test_sets") or {}:  # docs/robustness.md: extra test sets, generated
        overrides = _set(overrides, f"test_sets.{name}.data_dir", str(data[name]))
        overrides = _set(overrides, f"test_sets.{name}.num_workers", "0")
    shifted_sets = {"cifar10_1datamodule": "cifar10_1", "cifar10cdatamodule": "cifar10_c"}
    shifted = shifted_sets.get(target.rsplit(".", 1)[-1])  # dataset=cifar10_1: its generated files
    for key, value, force in [
        ("dataset.data_dir", str(data[kind if shifted is None else shifted]), True),
        ("dataset.num_workers", "0", True),
        ("dataset.batch_size", "24", False),  # a multiple of 2, 3, 4: DDP ranks, dataset.repeated_augmentation
        ("trainer.max_epochs", "1", example.config_name == "train"),
        ("++trainer.limit_train_batches", "2", True),
        ("++trainer.limit_val_batches", "2", True),
        ("++trainer.limit_test_batches", "2", True),
        ("logger", "csv", False),
        ("hydra.run.dir", str(tmp / "run"), True),
        # no hydra.sweep.dir: a sweep runs as written, into <working dir>/logs/<task>/multiruns/<time>/
        # (an explicit one hid that the default sweep dir could not be resolved)
    ]:
        overrides = _set(overrides, key, value, force)
    if imagenet:
        overrides = _set(overrides, "augmentation.resolution", "64", force=False)
    if "hparams_search" in composed.get("hydra", {}).get("sweeper", {}).get("_target_", "") or any(
        o.startswith("hparams_search=") for o in overrides
    ):
        overrides = _set(overrides, "hydra.sweeper.n_trials", "2")
    return overrides


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.text for e in EXAMPLES])
def test_readme_example_runs(
    example: Example, readme_data: dict[str, Path], readme_checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    if example.text in COMPOSE_ONLY:
        pytest.skip(f"{COMPOSE_ONLY[example.text]}: checked by composition (test_readme_example_composes)")
    composed = compose_example(example, tmp_path)
    script = REPO_ROOT / f"{example.config_name}.py"
    overrides = shrunk(example, composed, readme_data, readme_checkpoints, tmp_path)
    # a temp dir as the working dir: relative paths of the example (optuna.db, ./data) land there
    proc = _run([str(script), *example.flags, *overrides], tmp_path)
    if "--cfg" in example.flags:
        assert "dataset:" in proc.stdout
    elif example.multirun:
        (sweep_dir,) = (tmp_path / "logs" / example.config_name / "multiruns").iterdir()
        rows = list(csv.DictReader((sweep_dir / "summary.csv").read_text().splitlines()))
        assert rows and {r["status"] for r in rows} == {"COMPLETED"}, rows
    elif example.config_name == "predict":
        assert (tmp_path / "run" / "predictions.csv").is_file()
    else:
        assert (tmp_path / "run" / "metrics.json").is_file()
