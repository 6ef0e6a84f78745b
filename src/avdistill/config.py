"""Config dataclasses <-> command-line options, so every option is declared (and documented) once."""

from __future__ import annotations

import argparse
import dataclasses
import math
import operator
import typing

from avdistill.errors import ConfigError


def split_names(text: str) -> list[str]:
    """A comma-separated command-line list: 'a, b,,c' -> ['a', 'b', 'c']."""
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_ints(text: str, option: str = "the value") -> tuple[int, ...]:
    """'1,10' -> (1, 10); anything else is a ConfigError naming `option`."""
    try:
        return tuple(int(x) for x in split_names(text))
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got {text!r}") from None


def _parse_tuple(text: str) -> tuple[int, ...]:
    """argparse type for tuple-valued config fields."""
    try:
        return parse_ints(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_config_options(parser: argparse.ArgumentParser, config_class: type, title: str, skip: tuple[str, ...] = ()) -> None:
    """One ``--name`` option per dataclass field (but `skip`), with the field's help text and default."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        if f.name in skip:
            continue
        kind = hints[f.name]
        parse = _parse_tuple if typing.get_origin(kind) is tuple else kind
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", type=parse, default=None,
                           metavar=kind.__name__.upper() if isinstance(kind, type) else "LIST",
                           help=f"{f.metadata.get('help', '')} (default: {shown})")


def parse_assignment(text: str, config_class: type) -> tuple[str, object]:
    """'name=value' -> (name, value typed like the config field), e.g. 'iterations=100' -> ('iterations', 100)."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    hints = typing.get_type_hints(config_class)
    if not sep or name not in {f.name for f in dataclasses.fields(config_class)}:
        valid = ", ".join(f.name for f in dataclasses.fields(config_class))
        raise ConfigError(f"cannot set {text!r}: expected NAME=VALUE with NAME one of: {valid}")
    kind = hints[name]
    try:
        return name, parse_ints(value) if typing.get_origin(kind) is tuple else kind(value)
    except (ValueError, ConfigError):
        raise ConfigError(f"cannot set {text!r}: {value!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def config_overrides(args: argparse.Namespace, config_class: type) -> dict:
    """The options the user actually gave for `config_class`."""
    return {f.name: getattr(args, f"cfg_{f.name}") for f in dataclasses.fields(config_class)
            if getattr(args, f"cfg_{f.name}", None) is not None}


def build_config(config_class: type, overrides: dict):
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(config_class)
    for name, value in overrides.items():
        _check_type(name, value, hints[name])
    config = config_class(**overrides)
    for f in dataclasses.fields(config_class):
        check_value(f, getattr(config, f.name))
    return config


def _check_type(name: str, value, kind) -> None:
    """Options given through the Python API get the type checks the command line's parsing gives."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {int: isinstance(value, int) and not isinstance(value, bool), float: number, str: isinstance(value, str),
          bool: isinstance(value, bool)}.get(kind)
    if typing.get_origin(kind) is tuple:
        ok = isinstance(value, (tuple, list)) and all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    if ok is False:
        raise ConfigError(f"--{name.replace('_', '-')} must be {getattr(kind, '__name__', 'a list')}, got {value!r}")


_BOUNDS = (("minimum", operator.ge, ">="), ("above", operator.gt, ">"), ("maximum", operator.le, "<="),
           ("below", operator.lt, "<"))


def check_value(f: dataclasses.Field, value) -> None:
    """A ConfigError naming the option unless `value` is allowed for field `f`.

    Every number must be finite and not negative; a field may narrow that with the metadata
    ``minimum`` (inclusive), ``above`` (exclusive lower bound), ``maximum``, ``below`` (exclusive
    upper bound), ``choices``, and ``check`` (a function that raises ConfigError on a bad value;
    see :func:`avdistill.methods.base.option`). Checked when the config is built, so a typo fails
    before any work starts or any file is written.
    """
    name = f"--{f.name.replace('_', '-')}"
    meta = f.metadata
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        if value < 0 and "minimum" not in meta and "above" not in meta:
            raise ConfigError(f"{name} must not be negative, got {value}")
        for key, ok, sign in _BOUNDS:
            if key in meta and not ok(value, meta[key]):
                raise ConfigError(f"{name} must be {sign} {meta[key]}, got {value}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, meta['choices']))}, got {value!r}")
    if "check" in meta:
        meta["check"](value)
