"""Dataset options share their common keys through conf/dataset/_base.yaml (+ _map_style.yaml, _image_files.yaml).

An option file says what is particular to its data; the DataModule arguments every dataset takes
live once in the base, so a change there reaches every option.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from litvision.launch.resolvers import register_resolvers

CONF = Path(__file__).resolve().parents[1] / "conf"
BASES = {"_base": None, "_map_style": "_base", "_image_files": "_map_style"}  # base -> the base it builds on
USERS = {
    "cifar10": "_map_style",
    "class_folder": "_image_files",
    "imagenet": "_image_files",
    "imagenet_shards": "_base",
}


def raw(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / "dataset" / f"{name}.yaml"))  # unresolved


def inherited(base: str | None) -> dict:
    """The keys (unresolved) an option gets from ``base`` and the bases below it."""
    if base is None:
        return {}
    own = {k: v for k, v in raw(base).items() if k != "defaults"}
    return {**inherited(BASES[base]), **own}


@pytest.mark.parametrize("option, base", sorted(USERS.items()))
def test_option_builds_on_its_base_and_repeats_none_of_its_values(option: str, base: str) -> None:
    text = raw(option)
    assert base in text["defaults"]
    shared = inherited(base)
    repeated = sorted(k for k, v in text.items() if k in shared and shared[k] == v)
    assert not repeated, f"conf/dataset/{option}.yaml repeats {repeated} from conf/dataset/{base}.yaml"


@pytest.mark.parametrize("option, base", sorted(USERS.items()))
def test_composed_option_has_every_base_key(option: str, base: str) -> None:
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        location = "dataset.shards=/x" if option == "imagenet_shards" else "dataset.data_dir=/x"
        cfg = compose("train", overrides=[f"dataset={option}", location])
    dataset = OmegaConf.to_container(cfg.dataset)  # unresolved
    own = raw(option)
    for key, value in inherited(base).items():
        assert dataset[key] == own.get(key, value), key
