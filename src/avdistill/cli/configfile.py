"""``--config FILE``: a command's options from a TOML file, or from a run's ``synthetic.json`` (to rerun it).

A TOML file holds flat keys named like the command's options without the dashes (``real_per_class``
or ``real-per-class``); a method's options sit beside the command's own::

    method = "avdd"
    data = "av-digits-hard"
    ipc = 10
    iterations = 300
    lam_jm = 5.0

Options given on the command line override the file. A ``synthetic.json`` written by ``distill``
gives the method, IPC, seed, data and every method option of that run, so rerunning it makes the
same set bit for bit (on the same device); a run stopped by ``--time-budget`` reruns to where it
stopped. Unknown keys, wrong types and out-of-range values are one error line naming the key and the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
import typing
from pathlib import Path

from avdistill.config import check_type, check_value, flat_fields
from avdistill.errors import ConfigError, DataError

SYNTHETIC_FORMAT = "avdistill.synthetic/1"


def add_config_file_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="read options from a TOML file or a run's synthetic.json (rerun it exactly); "
                             "options on the command line override the file")


def read_config_file(path: str) -> tuple[dict, str | None]:
    """(options by key, the data checksum the file's run used, or None) from a TOML or synthetic.json file."""
    file = Path(path)
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the config file ({exc})") from None
    if file.suffix == ".json":
        try:
            header = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"not valid JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != SYNTHETIC_FORMAT:
            raise DataError(path, f"a JSON config must be the synthetic.json of a run (format {SYNTHETIC_FORMAT})")
        return _from_synthetic(header.get("meta") or {}, path)
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(path, f"not valid TOML ({exc})") from None
    for key, value in values.items():
        if isinstance(value, dict):
            raise DataError(path, f"key {key!r}: tables are not options; write the options as flat keys")
    return {key.replace("-", "_"): value for key, value in values.items()}, None


def _from_synthetic(meta: dict, path: str) -> tuple[dict, str | None]:
    try:
        values = {"method": meta["method"], "ipc": meta["ipc"], "seed": meta["seed"], "device": meta["device"],
                  "data": meta["source"].get("path") or meta["source"]["name"], **meta["config"]}
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(path, f"the run's metadata lacks {exc}; it cannot be rerun") from None
    stopped = meta.get("stopped")
    if isinstance(stopped, dict) and "iterations_done" in stopped:  # rerun the stopped run to where it stopped
        values["iterations"] = stopped["iterations_done"]
    return values, meta["source"].get("sha256")


def apply_config_file(parser: argparse.ArgumentParser, values: dict, path: str,
                      config_classes: tuple[type, ...] = ()) -> dict:
    """Make the file's values the parser's defaults (so flags override them); return the keys that are
    not the parser's options (a method's options, checked by :func:`check_file_options`).
    `config_classes`: the config dataclasses whose fields the parser has as options (range-checked here)."""
    fields = {f"cfg_{name}": f for c in config_classes for name, (f, _) in flat_fields(c).items()}
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    by_flag = {s.lstrip("-").replace("-", "_"): a for a in parser._actions for s in a.option_strings}
    defaults, rest = {}, {}
    for key, value in values.items():
        action = actions.get(key) or actions.get(f"cfg_{key}") or by_flag.get(key)
        if action is None or action.dest in ("help", "config"):
            rest[key] = value
            continue
        defaults[action.dest] = _convert(action, key, value, path)
        if action.dest in fields:
            check_file_value(fields[action.dest], defaults[action.dest], key, path)
    parser.set_defaults(**defaults)
    return rest


def _convert(action: argparse.Action, key: str, value, path: str):
    """`value` as argparse would have stored it for `action`, or a ConfigError naming the key and file."""
    def wrong(expected: str):
        return ConfigError(f"{path}: key {key!r} must be {expected}, got {value!r}")

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value if action.dest == key else (action.const if value else action.default)
    if isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+"):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(x, str) for x in items):
            raise wrong("a list of strings")
        return [_typed(action, key, x, path) for x in items]
    if isinstance(value, list):  # comma-separated options: [1, 10] is "1,10"
        value = ",".join(map(str, value))
    kind = action.type
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and isinstance(value, float)):
            raise wrong("an integer" if kind is int else "a number")
        value = kind(value)
    elif isinstance(value, (bool, dict)) or not isinstance(value, (str, int, float)):
        raise wrong("a string")
    else:
        value = _typed(action, key, str(value), path)
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{path}: key {key!r} must be one of {', '.join(map(str, action.choices))}, got {value!r}")
    return value


def _typed(action: argparse.Action, key: str, text: str, path: str):
    if action.type is None:
        return text
    try:
        return action.type(text)
    except (argparse.ArgumentTypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{path}: key {key!r}: {exc}") from None


def check_file_options(values: dict, config_class: type, path: str, what: str) -> dict:
    """The file's keys that are options of `config_class`, typed and range-checked; any other key is an error."""
    fields = flat_fields(config_class)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} for {what} "
                          f"(valid: {', '.join(fields)})")
    options = {}
    for key, value in values.items():
        f, kind = fields[key]
        if typing.get_origin(kind) is tuple and isinstance(value, list):
            value = tuple(value)
        try:
            check_type(key, value, kind)
        except ConfigError:
            raise ConfigError(f"{path}: key {key!r} must be {getattr(kind, '__name__', 'a list of integers')}, "
                              f"got {value!r}") from None
        if kind is float:
            value = float(value)
        check_file_value(f, value, key, path)
        options[key] = value
    return options


def check_file_value(f: dataclasses.Field, value, key: str, path: str) -> None:
    """A ConfigError naming the file and key unless `value` is allowed for option `key` (field `f`)."""
    try:
        check_value(f, value, key)
    except ConfigError as exc:
        raise ConfigError(f"{path}: key {key!r}: {exc}") from None
