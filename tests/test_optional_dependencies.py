"""A feature whose extra is not installed stops with one line naming the extra to install."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from litvision.utils.errors import ConfigError
from litvision.utils.optional import require


def test_missing_module_names_the_extra_and_the_pip_line() -> None:
    with pytest.raises(
        ConfigError, match=r"the audit's search needs the `audit` extra .*pip install 'litvision\[audit\]'"
    ):
        require("litvision_no_such_module", "audit", "the audit's search")


def test_present_module_is_returned() -> None:
    assert require("json", "audit", "x").dumps([1]) == "[1]"


def test_shards_without_webdataset_are_refused_before_any_data_is_read(monkeypatch, tmp_path) -> None:
    from omegaconf import OmegaConf

    from litvision.datamodules.shard_datamodule import ShardDataModule
    from litvision.tasks.prepare_shards import prepare_shards

    monkeypatch.setitem(sys.modules, "webdataset", None)  # what a missing install looks like
    with pytest.raises(ConfigError, match=r"dataset=imagenet_shards needs the `shards` extra .*litvision\[shards\]"):
        ShardDataModule(shards=str(tmp_path))
    with pytest.raises(ConfigError, match=r"prepare_shards.py needs the `shards` extra"):
        prepare_shards(OmegaConf.create({"out": str(tmp_path / "out")}))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("section, module", [("label_errors", "cleanlab"), ("duplicates", "faiss")])
def test_an_audit_section_without_its_extra_stops_before_reading_data(monkeypatch, tmp_path, section, module) -> None:
    from hydra import compose, initialize_config_dir

    from litvision.launch.resolvers import register_resolvers
    from litvision.tasks.audit import audit

    register_resolvers()
    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose("audit", [f"audit.sections=[{section}]", f"dataset.data_dir={tmp_path / 'no_data_here'}"])
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError, match=rf"audit section {section} needs the `audit` extra"):
        audit(cfg)  # a missing data dir would raise MissingDataError: the extra is checked first
