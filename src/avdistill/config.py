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


def option(default, help: str, note: str = "", **kwargs):
    """A config field that documents itself on the command line: what it is (`help`) and where its default
    comes from (`note`, e.g. "DM: 1.0"); `kwargs` may constrain its values (minimum, above, maximum, below,
    choices, check: see :func:`check_value`)."""
    return dataclasses.field(default=default, metadata={"help": help, "note": note, **kwargs})


def redefault(config_class: type, name: str, default, note: str, **metadata):
    """Option `name` of `config_class` with another default and the `note` saying where it comes from; its help
    and bounds stay declared once, in `config_class` (a method that changes a shared option's default).
    `metadata` replaces declared entries where the method differs, e.g. ``search=`` (the range ``avdistill tune``
    samples, :mod:`avdistill.searchspace`); None removes one."""
    field = {f.name: f for f in dataclasses.fields(config_class)}[name]
    merged = {**field.metadata, "note": note, **metadata}
    return dataclasses.field(default=default, metadata={key: value for key, value in merged.items()
                                                        if value is not None})


def nested(config_class: type):
    """A config field holding another config (bank, experts, herding features): its fields become options of
    their own under their own names (:func:`flat_fields`), so they are declared once, where they are used."""
    return dataclasses.field(default_factory=config_class, metadata={"nested": True})


def flat_fields(config_class: type) -> dict[str, tuple[dataclasses.Field, object]]:
    """name -> (field, type) of every option of `config_class`, nested configs flattened (names are unique)."""
    hints = typing.get_type_hints(config_class)
    fields: dict[str, tuple[dataclasses.Field, object]] = {}
    for f in dataclasses.fields(config_class):
        inner = flat_fields(hints[f.name]) if f.metadata.get("nested") else {f.name: (f, hints[f.name])}
        clash = set(inner) & set(fields)
        if clash:
            raise TypeError(f"{config_class.__name__}: option(s) {', '.join(sorted(clash))} declared twice")
        fields.update(inner)
    return fields


def flat_dict(config) -> dict:
    """The config's options as one flat {name: value} dict (what outputs record and users type)."""
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values.update(flat_dict(value) if f.metadata.get("nested") else {f.name: value})
    return values


def add_config_options(parser: argparse.ArgumentParser, config_class: type, title: str, skip: tuple[str, ...] = ()) -> None:
    """One ``--name`` option per config field (nested configs flattened, but `skip`), with its help and default."""
    group = parser.add_argument_group(title)
    for name, (f, kind) in flat_fields(config_class).items():
        if name in skip:
            continue
        parse = _parse_tuple if typing.get_origin(kind) is tuple else kind
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        note = f" ({f.metadata['note']})" if f.metadata.get("note") else ""
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg_{name}", type=parse, default=None,
                           metavar=kind.__name__.upper() if isinstance(kind, type) else "LIST",
                           help=f"{f.metadata.get('help', '')}{note} (default: {shown})")


def parse_assignment(text: str, config_class: type) -> tuple[str, object]:
    """'name=value' -> (name, value typed like the config field), e.g. 'iterations=100' -> ('iterations', 100)."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = flat_fields(config_class)
    if not sep or name not in fields:
        raise ConfigError(f"cannot set {text!r}: expected NAME=VALUE with NAME one of: {', '.join(fields)}")
    kind = fields[name][1]
    try:
        return name, parse_ints(value) if typing.get_origin(kind) is tuple else kind(value)
    except (ValueError, ConfigError):
        raise ConfigError(f"cannot set {text!r}: {value!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def config_overrides(args: argparse.Namespace, config_class: type) -> dict:
    """The options the user actually gave for `config_class` (flat names)."""
    return {name: getattr(args, f"cfg_{name}") for name in flat_fields(config_class)
            if getattr(args, f"cfg_{name}", None) is not None}


def build_config(config_class: type, overrides: dict):
    """`config_class` with the flat `overrides` applied (nested configs built alike), every value checked."""
    fields = flat_fields(config_class)
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    for name, value in overrides.items():
        check_type(name, value, fields[name][1])
    return validate(_construct(config_class, overrides))


def validate(config):
    """`config`, after checking every option against its declared bounds (a ConfigError naming the first bad one)."""
    values = flat_dict(config)
    for name, (f, _) in flat_fields(type(config)).items():
        check_value(f, values[name], name)
    return config


def _construct(config_class: type, overrides: dict):
    hints = typing.get_type_hints(config_class)
    kwargs = {}
    for f in dataclasses.fields(config_class):
        if f.metadata.get("nested"):
            kwargs[f.name] = _construct(hints[f.name], overrides)
        elif f.name in overrides:
            kwargs[f.name] = overrides[f.name]
    return config_class(**kwargs)


def check_type(name: str, value, kind) -> None:
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


def check_value(f: dataclasses.Field, value, name: str | None = None) -> None:
    """A ConfigError naming the option unless `value` is allowed for field `f`.

    Every number must be finite and not negative; a field may narrow that with the metadata
    ``minimum`` (inclusive), ``above`` (exclusive lower bound), ``maximum``, ``below`` (exclusive
    upper bound), ``choices`` (with ``what``, the thing chosen: "unknown head 'x'"), ``check`` (a
    function that raises ConfigError on a bad value) and, for a tuple, ``each`` (the bounds every
    element obeys, e.g. ``{"minimum": 1}``) and ``nonempty``. Checked when the config is built, so a typo fails before any work starts or any file is written.
    """
    name = f"--{(name or f.name).replace('_', '-')}"
    meta = f.metadata
    _check_bounds(name, value, meta)
    if isinstance(value, tuple):
        if meta.get("nonempty") and not value:
            raise ConfigError(f"{name} must list at least one value")
        for item in value:
            _check_bounds(name, item, meta.get("each", {}))
    if "choices" in meta and value not in meta["choices"]:
        choices = ", ".join(map(str, meta["choices"]))
        what = f"unknown {meta['what']} {value!r}" if "what" in meta else repr(value)  # as the registries say it
        raise ConfigError(f"{name} must be one of {choices}; got {what}")
    if "check" in meta:
        meta["check"](value)


def _check_bounds(name: str, value, meta) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
        if value < 0 and "minimum" not in meta and "above" not in meta:
            raise ConfigError(f"{name} must not be negative, got {value}")
        for key, ok, sign in _BOUNDS:
            if key in meta and not ok(value, meta[key]):
                raise ConfigError(f"{name} must be {sign} {meta[key]}, got {value}")
