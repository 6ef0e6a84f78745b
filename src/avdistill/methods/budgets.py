"""Budgets: how much work a method does, sized for the machine.

A method registers ``budgets`` (name -> option values, ``register_method(budgets=...)``): ``paper``,
the values its paper used (hours on a laptop CPU for AVDD, DAVDD and MTT), and ``cpu``, a budget
that finishes in minutes, chosen on the validation split of the development benchmark
(docs/TUNING.md). The command line picks ``paper`` on a GPU and ``cpu`` otherwise, and says so;
options given explicitly override the budget's values.
"""

from __future__ import annotations

from avdistill.errors import ConfigError
from avdistill.methods.base import MethodSpec

BUDGET_NAMES = ("paper", "cpu")


def default_budget(device: str) -> str:
    return "paper" if device.startswith("cuda") else "cpu"


def budget_options(spec: MethodSpec, budget: str | None) -> dict:
    """The option values of `budget` for a method (none for a method without budgets or budget None)."""
    if budget is None:
        return {}
    if budget not in BUDGET_NAMES:
        raise ConfigError(f"--budget must be one of {', '.join(BUDGET_NAMES)}, got {budget!r}")
    return dict(spec.budgets.get(budget, {}))


def describe_budget(spec: MethodSpec, budget: str, device: str, chosen: bool) -> str:
    """One line for the start of a run: which budget, what it sets, and how to get the other one."""
    values = budget_options(spec, budget)
    if not values:
        return ""
    why = f"the default on {device}" if not chosen else "--budget"
    others = [b for b in BUDGET_NAMES if b != budget and budget_options(spec, b)]
    other = "; ".join(f"--budget {b}: {_settings(budget_options(spec, b))}" for b in others)
    return f"{spec.name}: budget {budget!r} ({why}): {_settings(values)}" + (f" ({other})" if other else "")


def _settings(values: dict) -> str:
    return ", ".join(f"{name.replace('_', '-')} {value}" for name, value in values.items())
