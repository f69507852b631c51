"""YAML configs with presets and dotted command-line overrides (`optim.lr=3e-4`), checked against the file."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


class ConfigError(ValueError):
    """A config file, preset or override is wrong; the message names it and the valid choices."""


class Config(dict):
    """A nested dict whose keys read as attributes: `cfg.train.lr`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}; keys: {sorted(self)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @staticmethod
    def wrap(obj: Any) -> Any:
        if isinstance(obj, dict):
            return Config({k: Config.wrap(v) for k, v in obj.items()})
        return obj

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}


def dotted_keys(cfg: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys.append(prefix + k)
        if isinstance(v, dict):
            keys += dotted_keys(v, prefix + k + ".")
    return keys


def _check_type(key: str, old: Any, new: Any) -> Any:
    if old is None or new is None:
        return new
    if isinstance(old, bool) or isinstance(new, bool):
        if isinstance(old, bool) and isinstance(new, bool):
            return new
    elif isinstance(old, float) and isinstance(new, int):
        return float(new)
    elif isinstance(old, type(new)) or isinstance(new, type(old)):
        return new
    raise ConfigError(f"{key} must be {type(old).__name__} (like {old!r}), got {type(new).__name__} {new!r}")


def set_dotted(cfg: dict, key: str, value: Any) -> None:
    """Set `a.b.c` = value in place; the key must already exist and the type must match its default."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            close = difflib.get_close_matches(key, dotted_keys(cfg), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; valid keys: {', '.join(dotted_keys(cfg))}"
            raise ConfigError(f"unknown config key {key!r}{hint}")
        if i == len(parts) - 1:
            node[part] = _check_type(key, node[part], value)
        else:
            node = node[part]


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, for example train.lr=3e-4")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):  # YAML reads 3e-4 as a string; try a number
        try:
            value = float(value)
        except ValueError:
            pass
    return key.strip(), value


def load_config(name: str | Path, preset: str | None = None, overrides: list[str] = ()) -> Config:
    """Read `configs/<name>.yaml` (or a path), apply the preset's overrides, then the command line's."""
    path = Path(name)
    if not path.suffix:
        path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    presets = raw.pop("presets", {}) or {}
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r} for {path.name}; choose one of {sorted(presets)}")
        for key, value in presets[preset].items():
            set_dotted(raw, key, value)
    for text in overrides:
        set_dotted(raw, *parse_override(text))
    cfg = Config.wrap(raw)
    cfg["preset"] = preset
    return cfg
