"""Typed configs: YAML + overrides, validation naming the field, and run records."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import yaml

from audios.audio import AudioConfig
from audios.config import config_to_dict, load_config
from audios.errors import ConfigError
from audios.runs import write_run_info


@dataclass(frozen=True)
class Inner:
    rate: int = 16000
    names: tuple[str, ...] = ("a",)


@dataclass(frozen=True)
class Outer:
    inner: Inner = Inner()
    ratio: float = 0.5
    flag: bool = False
    label: str | None = None


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"inner": {"rate": 8000}, "ratio": 0.25}))
    cfg = load_config(Outer, path, ["inner.names=x,y", "flag=true", "label=hello"])
    assert cfg == Outer(inner=Inner(rate=8000, names=("x", "y")), ratio=0.25, flag=True, label="hello")
    assert load_config(Outer, None, ["inner.names=[p, q]"]).inner.names == ("p", "q")


def test_round_trip(tmp_path):
    cfg = Outer(inner=Inner(rate=22050, names=("z",)), ratio=0.1, flag=True)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(Outer, path) == cfg


def test_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="unknown field.*bogus"):
        load_config(Outer, None, ["bogus=1"])
    with pytest.raises(ConfigError, match="Inner.rate"):
        load_config(Outer, None, ["inner.rate=fast"])
    with pytest.raises(ConfigError, match="flag"):
        load_config(Outer, None, ["flag=maybe"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Outer, None, ["novalue"])
    # The component's own validation runs too.
    with pytest.raises(ConfigError, match="channel_policy"):
        load_config(AudioConfig, None, ["channel_policy=left"])


def test_run_info(tmp_path):
    write_run_info(tmp_path / "run", "manifest", {"a": 1}, seed=3)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["command"] == "manifest" and info["seed"] == 3
    assert "numpy" in info["versions"] and "python" in info["versions"]
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()) == {"a": 1}
