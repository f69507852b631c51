"""YAML configs with presets and dotted command-line overrides (`optim.lr=3e-4`), checked against the file.

Checks made when a config is loaded, so a bad value fails at once, not minutes into a run:
- an override's key must exist and its value must have the default's type; a key whose default is
  null takes its type from the file's `types:` section (every such key must be listed there);
- enum-like keys accept only their values (CHOICES), counts must be positive (POSITIVE);
- YAML floats written without a dot (`3e-4`) are floats, not strings.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

CHOICES = {"train.dtype": ("float32", "bfloat16"), "train.best_mode": ("min", "max"),
           "train.finish_with": ("best", "last"), "model.pool": ("cls", "mean"), "model.stem": ("patch", "conv"),
           "model.vision.stem": ("patch", "conv"),
           "model.tokenizer": ("word", "char"), "model.connector": ("mlp", "linear"),
           "model.reduce": ("none", "avgpool", "pixel_shuffle"), "rl.baseline": ("greedy", "mean")}
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
POSITIVE = ("train.batch_size", "train.grad_accum", "train.eval_interval", "train.log_interval",
            "train.checkpoint_interval", "augment.feature_views",
            "rl.samples")
DERIVED = {"train.eval_interval": "train.epochs", "train.max_steps": "train.epochs"}  # 0 allowed when epochs > 0
TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list}


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


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `3e-4` as a string (it wants `3.0e-4`); this loader reads it as the float it means."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def read_yaml(text: str) -> Any:
    """Parse YAML text; floats written without a dot (`3e-4`) are floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def dotted_keys(cfg: dict, prefix: str = "") -> list[str]:
    """Every key of a nested dict, dotted: {'a': {'b': 1}} -> ['a', 'a.b']."""
    keys = []
    for k, v in cfg.items():
        keys.append(prefix + k)
        if isinstance(v, dict):
            keys += dotted_keys(v, prefix + k + ".")
    return keys


def flatten(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1} (leaves only)."""
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def config_diff(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (old value, new value)} for every leaf that differs (a missing key counts as None)."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def with_added_keys(saved: dict, name: str | Path) -> tuple[dict, list[str]]:
    """A run's saved config with every key the config file gained since it was written, at the file's own default
    (not a preset's: a new key's default keeps what runs did before it existed). Returns (config, keys added)."""
    base = flatten(load_config(name))
    added = sorted(k for k in base.keys() - flatten(saved).keys() if k != "preset" and not k.startswith("types."))
    out = copy.deepcopy(saved)
    for key in added:
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = base[key]
    return out, added


def _check_type(key: str, old: Any, new: Any, declared: type | None = None) -> Any:
    if new is None:
        return new
    if old is None:
        if declared is None:
            return new
        old_type = declared
    else:
        old_type = type(old)
    if old_type is bool or isinstance(new, bool):
        if old_type is bool and isinstance(new, bool):
            return new
    elif old_type is float and isinstance(new, int):
        return float(new)
    elif isinstance(new, old_type):
        return new
    like = f" (like {old!r})" if old is not None else ""
    raise ConfigError(f"{key} must be {old_type.__name__}{like}, got {type(new).__name__} {new!r}")


def set_dotted(cfg: dict, key: str, value: Any, types: dict[str, type] | None = None) -> None:
    """Set `a.b.c` = value in place; the key must already exist and the type must match its default."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            close = difflib.get_close_matches(key, dotted_keys(cfg), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else f"; valid keys: {', '.join(dotted_keys(cfg))}"
            raise ConfigError(f"unknown config key {key!r}{hint}")
        if i == len(parts) - 1:
            node[part] = _check_type(key, node[part], value, (types or {}).get(key))
        else:
            node = node[part]


def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=3e-4` -> ('train.lr', 0.0003): the value read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, for example train.lr=3e-4")
    key, raw = text.split("=", 1)
    try:
        value = read_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: cannot read the value ({str(e).splitlines()[0]})") from e
    return key.strip(), value


def _declared_types(raw: dict, path: Path) -> dict[str, type]:
    declared = raw.pop("types", {}) or {}
    unknown = {k: v for k, v in declared.items() if v not in TYPES}
    if unknown:
        raise ConfigError(f"{path.name}: types: {unknown} must each be one of {sorted(TYPES)}")
    types = {k: TYPES[v] for k, v in declared.items()}
    untyped = [k for k, v in flatten(raw).items() if v is None and k not in types]
    if untyped:
        raise ConfigError(f"{path.name}: keys with a null default need a type in its `types:` section: {untyped}")
    return types


def validate(cfg: dict, source: str = "config") -> None:
    """Enum-like keys take only their values, counts are positive; raises ConfigError naming the key."""
    flat = flatten(cfg)
    for key, allowed in CHOICES.items():
        if key in flat and flat[key] not in allowed:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(allowed)}; got {flat[key]!r}")
    if "train.device" in flat and not DEVICE.match(str(flat["train.device"])):
        device = flat["train.device"]
        raise ConfigError(f"{source}: train.device must be auto, cpu, mps, cuda or cuda:N, got {device!r}")
    for key in POSITIVE:
        if key in flat and flat[key] < 1 and not (DERIVED.get(key) in flat and flat[DERIVED[key]] > 0):
            raise ConfigError(f"{source}: {key} must be at least 1, got {flat[key]}")


def load_config(name: str | Path, preset: str | None = None, overrides: list[str] = ()) -> Config:
    """Read `configs/<name>.yaml` (or a path), apply the preset's overrides, then the command line's."""
    path = Path(name)
    if not path.suffix:
        path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    raw = read_yaml(path.read_text()) or {}
    presets = raw.pop("presets", {}) or {}
    types = _declared_types(raw, path)
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r} for {path.name}; choose one of {sorted(presets)}")
        for key, value in presets[preset].items():
            set_dotted(raw, key, value, types)
    for text in overrides:
        set_dotted(raw, *parse_override(text), types)
    validate(raw, path.name)
    cfg = Config.wrap(raw)
    cfg["preset"] = preset
    cfg["types"] = {k: v.__name__ for k, v in types.items()}
    return cfg


def apply_overrides(cfg: dict, overrides: list[str]) -> Config:
    """A copy of a resolved config (e.g. a checkpoint's) with command-line overrides applied and checked."""
    raw = Config.wrap(copy.deepcopy(dict(cfg))).to_dict()
    types = {k: TYPES[v] for k, v in (raw.get("types") or {}).items()}
    for text in overrides:
        set_dotted(raw, *parse_override(text), types)
    validate(raw, "config")
    return Config.wrap(raw)
