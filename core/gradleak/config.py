"""Typed parameters: build a component's ``Config`` dataclass from strings or TOML values.

Every component has a ``Config`` dataclass whose fields, with their types and defaults, are its whole
parameter surface. ``--set key=value`` (strings) and study files (TOML values) both go through
:func:`make_config`, which refuses unknown keys with the valid ones listed, and values of the wrong type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from .errors import ConfigError, suggest


def config_fields(config_cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


def _coerce(owner: str, key: str, value: Any, annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = get_args(annotation)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(owner, key, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{owner}: {key} cannot be {value!r}")
    if origin is Literal:
        allowed = get_args(annotation)
        for choice in allowed:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(
            f"{owner}: {key}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}"
        )
    if origin in (tuple, list):
        items = value
        if isinstance(value, str):
            items = [v for v in value.split(",") if v != ""] if value else []
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{owner}: {key} expects a list, got {value!r}")
        args = [a for a in get_args(annotation) if a is not Ellipsis] or [str]
        out = [_coerce(owner, key, v, args[0]) for v in items]
        return tuple(out) if origin is tuple else out
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{owner}: {key} expects true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{owner}: {key} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{owner}: {key} expects an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{owner}: {key} expects an integer, got {value!r}")
        return int(as_float)
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{owner}: {key} expects a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{owner}: {key} expects a number, got {value!r}") from None
    if annotation is str:
        return str(value)
    return value


def make_config(config_cls: type, params: Mapping[str, Any], owner: str) -> Any:
    """Build ``config_cls`` from ``params``, coercing strings; unknown keys raise :class:`ConfigError`."""
    fields = config_fields(config_cls)
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for key, raw in params.items():
        if key not in fields:
            valid = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(
                f"{owner} has no parameter '{key}'.{suggest(key, fields)} Valid parameters: {valid} "
                f"(see: gradleak show {owner})"
            )
        values[key] = _coerce(owner, key, raw, hints[key])
    try:
        config = config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{owner}: {exc}") from None
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate(owner)
    return config


def split_params(
    params: Mapping[str, Any], *targets: tuple[str, type]
) -> list[dict[str, Any]]:
    """Route each key of ``params`` to the first target ``(owner, Config)`` that has that field.

    A key no target knows raises :class:`ConfigError` listing every valid key of every target.
    """
    routed: list[dict[str, Any]] = [{} for _ in targets]
    for key, value in params.items():
        for slot, (_, config_cls) in enumerate(targets):
            if key in config_fields(config_cls):
                routed[slot][key] = value
                break
        else:
            owners = []
            known: list[str] = []
            for owner, config_cls in targets:
                names = sorted(config_fields(config_cls))
                known.extend(names)
                owners.append(f"{owner}: {', '.join(names) or '(none)'}")
            raise ConfigError(
                f"unknown --set key '{key}'.{suggest(key, known)} Valid keys are {'; '.join(owners)}"
            )
    return routed


def describe_fields(config_cls: type) -> list[tuple[str, str, str, str]]:
    """``(name, type, default, help)`` rows for ``gradleak show``; help comes from field metadata."""
    hints = typing.get_type_hints(config_cls)
    rows = []
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        type_name = _type_name(hints[f.name])
        rows.append((f.name, type_name, default, str(f.metadata.get("help", ""))))
    return rows


def _type_name(annotation: Any) -> str:
    """``int``, ``int | None``, ``fedsgd|fedavg|aggregate`` (a Literal lists its choices)."""
    if get_origin(annotation) is Literal:
        return "|".join(map(str, get_args(annotation)))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def param(default: Any, help: str) -> Any:
    """A dataclass field with a default and a help text shown by ``gradleak show``."""
    return dataclasses.field(default=default, metadata={"help": help})


def require_positive(config: Any, owner: str, *names: str, allow_zero: tuple[str, ...] = ()) -> None:
    """Refuse non-positive values of ``names`` (``allow_zero`` may be 0) with a one-line ConfigError."""
    for name in names:
        value = getattr(config, name)
        if value < 0 or (value == 0 and name not in allow_zero) or value != value:
            bound = ">= 0" if name in allow_zero else "> 0"
            raise ConfigError(f"{owner}: {name} must be {bound}, got {value}")


def require_count(config: Any, owner: str, *names: str) -> None:
    """Refuse values of ``names`` below 1 (sizes, steps, counts) with a one-line ConfigError."""
    for name in names:
        value = getattr(config, name)
        if value < 1:
            raise ConfigError(f"{owner}: {name} must be >= 1, got {value}")
