"""Config dataclasses <-> command-line options, so every option is declared (and documented) once."""

from __future__ import annotations

import argparse
import dataclasses
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
    config = config_class(**overrides)
    for f in dataclasses.fields(config_class):
        value = getattr(config, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"--{f.name.replace('_', '-')} must not be negative, got {value}")
    return config
