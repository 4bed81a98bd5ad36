"""litvision as an installed plugin: a wheel in a fresh venv, used from a user's own directory.

The checkout's editable install would hide packaging mistakes (a config group missing from
the wheel, a module that only imports from the repo root), so this test builds the wheel,
installs it non-editable into a new venv and runs the console scripts from a temp dir that
has only the user's own config. To avoid installing torch again, the new venv sees the
dependencies of this venv through a plain path line in a ``.pth`` file: a path line adds
the directory but does not run the ``.pth`` files inside it, so the editable install's
import hook (``__editable__.litvision-*.pth``) cannot leak in (asserted below).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from tests.helpers.fake_cifar import write_fake_cifar
from tests.helpers.run_helpers import REPO_ROOT, read_metrics

TINY = ["model=small_cnn", "model.backbone.width=8", "trainer.max_epochs=1", "logger=csv"]
# what a source checkout may hold besides the package (never part of the wheel)
NOT_SOURCE = (
    ".venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "logs",
    "outputs",
    "multirun",
    "wandb",
    "data",
    "lightning_logs",
    ".pytest_cache",
)


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the checkout (the build writes build/ and *.egg-info/ into its source)."""
    source = tmp / "src"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "wheels"), str(source)]
    if int(version("setuptools").split(".")[0]) >= 68:  # what pyproject's build-system asks for
        command.insert(4, "--no-build-isolation")  # skip fetching setuptools into an isolated env (~7 s)
    _run(command, tmp, os.environ.copy())
    (wheel,) = (tmp / "wheels").glob("litvision-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, os.environ.copy())
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        tmp,
        os.environ.copy(),
    )
    site_packages = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, os.environ.copy()
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "_litvision_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    return venv


def _user_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "WANDB_API_KEY")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        PYTHONNOUSERSITE="1",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        NO_ALBUMENTATIONS_UPDATE="1",
    )
    return env


def _write_user_dataset_option(path: Path, data_dir: Path) -> None:
    """The user's own ``dataset=mydata``, defined only in their config dir, built on our ``cifar10`` option."""
    path.parent.mkdir(parents=True)
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": ["cifar10", "_self_"],
                "data_dir": str(data_dir),
                "download": False,
                "batch_size": 16,
                "num_workers": 0,
            }
        )
    )


USER_SCRIPT = '''"""The user's own entry script: litvision's training task with the user's own primary config."""
import hydra

from litvision.launch.job import run_job
from litvision.tasks.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="my_train")
def main(cfg):
    return run_job("my_train", cfg, train)


if __name__ == "__main__":
    main()
'''
USER_PRIMARY_CONFIG = {
    # litvision's train config and every group of it, found through the search path below
    "defaults": ["train", {"override dataset": "mydata"}, "_self_"],
    "hydra": {"searchpath": ["pkg://litvision.conf"]},
    "tags": ["mine"],
}


def test_wheel_in_fresh_venv_trains_on_a_users_own_dataset_option(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = _fresh_venv(tmp_path, wheel)
    env = _user_env(venv)
    user = tmp_path / "user_project"  # not the repo: nothing of the checkout is importable from here
    user.mkdir()
    data = tmp_path / "user_data"
    write_fake_cifar(data, n_train_per_class=12, n_test_per_class=4, seed=0)

    # the wheel's litvision is the one imported: not the checkout, not the editable install's hook
    probe = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sys, litvision, litvision.conf; print(litvision.__file__); "
            "print([f.__module__ for f in sys.meta_path])",
        ],
        user,
        env,
    ).stdout.splitlines()
    assert Path(probe[0]).is_relative_to(venv) and "editable" not in probe[1], probe

    # 1. `--config-dir`: the user's option next to ours; 2 DDP processes (rank 1 is relaunched
    #    as `python -m litvision.train --config-dir ...` and must find dataset=mydata too)
    _write_user_dataset_option(user / "myconf" / "dataset" / "mydata.yaml", data)
    proc = _run(
        [
            "litvision-train",
            "--config-dir",
            "./myconf",
            "dataset=mydata",
            "trainer=ddp_sim",
            "hydra.run.dir=run",
            *TINY,
        ],
        user,
        env,
    )
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    trained = read_metrics(user / "run")
    assert "test/acc_top1" in trained
    composed = yaml.safe_load((user / "run" / ".hydra" / "config.yaml").read_text())
    assert composed["dataset"]["data_dir"] == str(data)  # only mydata.yaml knows this folder

    # litvision-eval from the same place: the same test metrics as the run's own test of that checkpoint
    best = user / "run" / "checkpoints" / "best.ckpt"
    _run(
        ["litvision-eval", "--config-dir", "./myconf", "dataset=mydata", f"ckpt_path={best}", "hydra.run.dir=eval"],
        user,
        env,
    )
    evaluated = read_metrics(user / "eval")
    assert evaluated["test/acc_top1"] == trained["test/acc_top1"]
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], rel=1e-5)

    # 2. the user's own Hydra app: own primary config + `hydra.searchpath: [pkg://litvision.conf]`
    project = user / "proj"
    _write_user_dataset_option(project / "conf" / "dataset" / "mydata.yaml", data)
    (project / "conf" / "my_train.yaml").write_text(yaml.safe_dump(USER_PRIMARY_CONFIG, sort_keys=False))
    (project / "my_train.py").write_text(USER_SCRIPT)
    _run([str(venv / "bin" / "python"), "my_train.py", "debug=fdr", "hydra.run.dir=run", *TINY], project, env)
    assert "test/acc_top1" in read_metrics(project / "run")
    composed = yaml.safe_load((project / "run" / ".hydra" / "config.yaml").read_text())
    assert composed["dataset"]["data_dir"] == str(data) and composed["tags"] == ["mine"]
