"""Search ranges, declared beside each option's bounds (``option(..., search=log_uniform(0.05, 20))``):
the part of an option's allowed values worth trying, which ``avdistill tune`` samples.

A range is log-uniform (learning rates: every decade alike), uniform (weights, momentum) or a
set of choices (initialisation, factor). ``--space name=low:high[:log]`` or ``name=a,b`` replaces
a declared range, or adds one to an option that declares none.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from avdistill.config import check_value, flat_fields
from avdistill.errors import ConfigError


@dataclass(frozen=True)
class SearchRange:
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def suggest(self, trial, name: str, kind: type):
        """Optuna's pick for option `name` (of type `kind`) in this range."""
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        if kind is int:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)

    def holds(self, value) -> bool:
        """Whether `value` is one this range can draw."""
        if self.choices:
            return value in self.choices
        return self.low <= value <= self.high

    def __str__(self) -> str:
        if self.choices:
            return ",".join(map(str, self.choices))
        return f"{self.low:g}:{self.high:g}" + (":log" if self.log else "")


def log_uniform(low: float, high: float) -> SearchRange:
    return SearchRange(low, high, log=True)


def uniform(low: float, high: float) -> SearchRange:
    return SearchRange(low, high)


def one_of(*choices) -> SearchRange:
    return SearchRange(choices=tuple(choices))


def declared_space(config_class: type) -> dict[str, SearchRange]:
    """The ranges the config's options declare, by option name, in declaration order."""
    return {name: f.metadata["search"] for name, (f, _) in flat_fields(config_class).items() if "search" in f.metadata}


def parse_space(text: str, config_class: type) -> tuple[str, SearchRange]:
    """'lr_audio=0.1:10:log' or 'init=real,herding' -> (name, range), checked against the option's bounds."""
    name, sep, spec = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = flat_fields(config_class)
    if not sep or name not in fields:
        raise ConfigError(f"--space {text!r}: expected NAME=LOW:HIGH[:log] or NAME=A,B,... with NAME one of: "
                          f"{', '.join(fields)}")
    f, kind = fields[name]
    parts = spec.split(":")
    try:
        if len(parts) == 1:
            search = one_of(*(kind(x.strip()) for x in spec.split(",") if x.strip()))
        elif len(parts) in (2, 3) and (len(parts) == 2 or parts[2] == "log") and kind in (int, float):
            search = SearchRange(kind(parts[0]), kind(parts[1]), log=len(parts) == 3)
        else:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--space {text!r}: expected {name}=LOW:HIGH[:log] (numbers) or {name}=A,B,... "
                          f"(values of type {kind.__name__})") from None
    check_range(f, search, f"--space {name}")
    return name, search


def check_range(f: dataclasses.Field, search: SearchRange, where: str) -> None:
    """A ConfigError naming `where` unless every value of `search` is allowed for option `f`."""
    if search.choices:
        values = search.choices
    elif not search.low < search.high:
        raise ConfigError(f"{where}: the low end {search.low} must be below the high end {search.high}")
    elif search.log and search.low <= 0:
        raise ConfigError(f"{where}: a log range must start above 0, got {search.low}")
    else:
        values = (search.low, search.high)
    if not values:
        raise ConfigError(f"{where}: no values to choose from")
    for value in values:
        try:
            check_value(f, value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
