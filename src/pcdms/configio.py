"""Typed-dataclass <-> YAML machinery: strict loading, dotted overrides, lossless dumping.

Every value is checked against its field's type hint; an unknown key or a wrong type raises
`ConfigError` with one line that names the dotted key and, for unknown keys, the closest valid ones.
This module knows nothing about PCDMs: `pcdms.config` declares the dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from pcdms.errors import ConfigError

T = TypeVar("T")
SHOWN_CHARS = 200  # at most this much of a value is quoted in a message


def shown(value: Any) -> str:
    """`repr(value)`, cut to SHOWN_CHARS: a message never prints a whole (possibly huge) value."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text):,} characters)"


MAX_NODES = 100_000  # a config's YAML tree, aliases expanded; real ones have a few hundred nodes


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document whose aliases expand past MAX_NODES nodes: nested aliases
    expand tenfold per level (a 435-byte file can ask for gigabytes), while presets use a few anchors."""

    def get_single_node(self):  # noqa: ANN201 - PyYAML's signature
        root = super().get_single_node()
        if root is not None:
            count = _expanded_size(root, {}, set())
            if count > MAX_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"its anchors and aliases expand to {count:,} values (at most {MAX_NODES:,} are "
                    "accepted in a config)", None)
        return root


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Nodes in the tree under `node` with every alias written out, computed once per distinct node."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise yaml.composer.ComposerError(None, None, "a YAML alias refers to its own anchor (an endless value)",
                                          node.start_mark)
    open_nodes.add(key)
    children: list = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [item for pair in node.value for item in pair]
    sizes[key] = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(key)
    return sizes[key]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        inner = _type_name(args[0]) if args else "any"
        return f"a list of {inner}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _fail(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(
        f"config key '{key}' expects {_type_name(tp)}, got {shown(value)} ({type(value).__name__})"
    )


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Return `value` converted to type `tp` (ints widen to floats, lists become tuples) or raise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise _fail(key, tp, value)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _fail(key, tp, value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(key, tp, value)
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"config key '{key}' expects {len(args)} items, got {len(value)}")
        return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _fail(key, tp, value)
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _fail(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(key, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _fail(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _fail(key, tp, value)
    raise TypeError(f"unsupported config type {tp!r} for '{key}'")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unknown_key(cls: type, key: str, name: str) -> ConfigError:
    valid = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    close += [v for v in valid if v not in close and (name in v or v in name)][: 3 - len(close)]
    parent = key.rpartition(".")[0]
    hint = ", ".join(f"'{parent + '.' if parent else ''}{c}'" for c in close)
    suggestion = f"; did you mean {hint}?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key '{key}'{suggestion}")


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a (possibly partial) mapping; missing keys keep their defaults."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            raise _unknown_key(cls, key, str(name))
        kwargs[name] = coerce(value, hints[name], key)
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain YAML-safe structure: dataclasses become dicts, tuples become lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, everything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.lr=3e-4' -> (['train', 'lr'], 0.0003). The value is read as YAML ('null', lists, numbers)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (for example train.batch_size=8)")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.load(raw, Loader=_BoundedLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML 1.1 reads '1e-4' as a string; users mean a number.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(cls: type[T], data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply dotted overrides to a raw mapping for dataclass `cls`, checking every key on the way."""
    for text in overrides:
        path, value = parse_override(text)
        node_cls: Any = cls
        node = data
        for depth, name in enumerate(path):
            key = ".".join(path[: depth + 1])
            if not dataclasses.is_dataclass(node_cls):
                raise ConfigError(f"config key '{'.'.join(path[:depth])}' has no sub-key '{name}'")
            names = {f.name for f in dataclasses.fields(node_cls)}
            if name not in names:
                raise _unknown_key(node_cls, key, name)
            hint = _hints(node_cls)[name]
            if depth == len(path) - 1:
                node[name] = value
            else:
                node = node.setdefault(name, {})
                node_cls = hint
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        data = yaml.load(text, Loader=_BoundedLoader) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


class _Dumper(yaml.SafeDumper):
    """Mappings as blocks, lists of scalars on one line: readable diffs of saved configs."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_yaml(obj: Any) -> str:
    return yaml.dump(to_dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
