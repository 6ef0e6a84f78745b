"""One Optuna study: settings of a method searched on the validation split, trials stored in a database.

A trial distils the dataset with settings drawn from the search space (the ranges the method's
options declare, :mod:`avdistill.searchspace`), checks the set on the validation split a few
times along the way (one evaluation run each; Optuna's median rule prunes a trial that lags the
others at the same iteration), and scores the finished set by its mean validation accuracy over
``runs`` evaluation runs. The test split is never read.

Trials live in a database (SQLite by default; any URL SQLAlchemy knows, e.g. PostgreSQL's, lets
several machines share a study). Finished trials are never rerun: a killed tune, started again,
counts them and runs only the rest; several processes can work on one study at once. A trial whose
process died stops sending heartbeats; after a grace period it is marked failed and its settings
are queued again. The first trial runs the method's defaults (at the study's budget and fixed
options), so the study scores its baseline exactly as it scores every draw. The sampler (TPE) is
reseeded from the seed and the number of finished trials before every trial, so a resumed study
draws what an uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy.exc
import torch
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from tqdm.auto import tqdm

from avdistill.config import flat_dict, flat_fields
from avdistill.data.dataset import AVDataset
from avdistill.errors import AVDistillError, ConfigError
from avdistill.evaluation import EvalConfig, evaluate
from avdistill.methods import distill, get_method
from avdistill.methods.base import make_config
from avdistill.methods.budgets import budget_options
from avdistill.methods.watch import Watch
from avdistill.searchspace import SearchRange, declared_space
from avdistill.seeding import derive_seed
from avdistill.synthetic import SyntheticSet

TRIALS_DIR = "trials"


@dataclass
class TuneSetup:
    """What a study searches and how it scores a trial; a resumed study must have the same."""

    method: str
    ipc: int
    trials: int
    seed: int = 0
    budget: str | None = "cpu"
    fixed: dict = field(default_factory=dict)  # method options held fixed (given on the command line)
    space: dict[str, SearchRange] = field(default_factory=dict)  # overrides of the declared ranges
    runs: int = 2  # validation runs scoring a finished trial
    checks: int = 2  # intermediate validation checks per trial (pruning); 0: no pruning
    eval_config: EvalConfig = field(default_factory=EvalConfig)
    startup_trials: int = 10  # TPE: random trials before the model guides the draws
    heartbeat: int = 60  # seconds between a running trial's heartbeats; stale after 3 of them
    defaults_first: bool = True  # trial 0 runs the method's defaults, the baseline scored like every trial

    def config(self, params: dict | None = None):
        """The method's config of a trial drawing `params`: the budget's values, the fixed options, the draws."""
        spec = get_method(self.method)
        return make_config(spec, {**budget_options(spec, self.budget), **self.fixed, **(params or {})})

    def options(self, params: dict | None = None) -> dict:
        """Every method option of a trial drawing `params`, flat, as distill takes them (none: the defaults)."""
        return flat_dict(self.config(params))

    def defaults(self) -> dict:
        """The method's defaults (at the budget and fixed options) of the searched options, where the range
        holds them; the baseline a study enqueues as its first trial."""
        default = self.options()
        return {name: default[name] for name, r in self.search_space().items() if r.holds(default[name])}

    def search_space(self) -> dict[str, SearchRange]:
        """The declared ranges with --space overrides, minus the options held fixed."""
        space = {**declared_space(get_method(self.method).config_class), **self.space}
        return {name: r for name, r in space.items() if name not in self.fixed}

    def identity(self, dataset: AVDataset) -> dict:
        """What must match for two processes (or a resume) to share a study."""
        return {"dataset": dataset.checksum or dataset.name, "method": self.method, "ipc": self.ipc, "seed": self.seed,
                "budget": self.budget, "fixed": self.fixed, "runs": self.runs, "checks": self.checks,
                "space": {name: str(r) for name, r in self.search_space().items()},
                "eval_config": flat_dict(self.eval_config), "defaults_first": self.defaults_first}


def storage_url(storage: str | None, out: Path) -> str:
    """A database URL: the one given (a bare path is an SQLite file), or ``<out>/study.db``."""
    if not storage:
        return f"sqlite:///{(out / 'study.db').resolve()}"
    return storage if "://" in storage else f"sqlite:///{Path(storage).resolve()}"


def open_study(setup: TuneSetup, dataset: AVDataset, url: str, name: str):
    """Create the study in the database, or join the one there if it searches the same thing."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since v2.8
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}  # wait on the other writers
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5) if setup.checks else optuna.pruners.NopPruner()
    for attempt in range(5):  # processes starting together race to create the tables: the loser finds them made
        try:
            storage = RDBStorage(url, engine_kwargs=engine, heartbeat_interval=setup.heartbeat,
                                 grace_period=3 * setup.heartbeat,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                        pruner=pruner)
            break
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):  # locked, or the version row made
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    identity = json.loads(json.dumps(setup.identity(dataset)))
    stored = study.user_attrs.get("setup")
    if stored is None:
        study.set_user_attr("setup", identity)
        if setup.defaults_first:  # skip_if_exists: two processes creating the study together enqueue it once
            study.enqueue_trial(setup.defaults(), user_attrs={"defaults": True}, skip_if_exists=True)
    elif stored != identity:
        differ = ", ".join(k for k in identity if stored.get(k) != identity[k])
        raise ConfigError(f"study {name!r} in {url} searches something else (differs in: {differ}); "
                          "give another --study-name or --out")
    return study


def finished(study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)))


def run_study(study, setup: TuneSetup, dataset: AVDataset, out: Path, device: str = "cpu",
              time_budget: float | None = None, progress: bool = True) -> str:
    """Run trials until the study has `setup.trials` finished ones (counting other processes' and earlier
    runs'), or until `time_budget` seconds have passed (no trial starts after that); say why it stopped."""
    started = time.perf_counter()
    objective = Objective(setup, dataset, out, device)
    bar = tqdm(total=setup.trials, initial=finished(study), desc=f"tune {setup.method}", disable=not progress,
               dynamic_ncols=True)
    with bar:
        while (done := finished(study)) < setup.trials:
            if time_budget is not None and time.perf_counter() - started >= time_budget:
                return f"the time budget ran out after {done} of {setup.trials} trials"
            study.sampler = optuna.samplers.TPESampler(seed=derive_seed(setup.seed, "tune", done) % 2**32,
                                                       n_startup_trials=setup.startup_trials)
            study.optimize(objective, n_trials=1)
            bar.update(finished(study) - bar.n)
            best = _best(study)
            if best is not None:
                bar.set_postfix(best=f"{100 * best.value:.2f} (#{best.number})", refresh=False)
    return f"{finished(study)} trials finished"


def _best(study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


class Objective:
    """One trial: draw settings, distil with intermediate validation checks, score on the validation split."""

    def __init__(self, setup: TuneSetup, dataset: AVDataset, out: Path, device: str):
        self.setup, self.dataset, self.out, self.device = setup, dataset, out, device
        self.spec = get_method(setup.method)
        self.kinds = {name: kind for name, (_, kind) in flat_fields(self.spec.config_class).items()}
        self.space = setup.search_space()

    def __call__(self, trial) -> float:
        setup = self.setup
        params = {name: r.suggest(trial, name, self.kinds[name]) for name, r in self.space.items()}
        options = {**setup.fixed, **params}
        trial_dir = self.out / TRIALS_DIR / f"{trial.number:04d}"
        trial.set_user_attr("synthetic", str(trial_dir / "synthetic.safetensors"))
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")
        start = time.perf_counter()
        try:
            config = setup.config(params)
            watch = self._watch(trial, config)
            syn = distill(self.dataset, setup.method, setup.ipc, setup.seed, trial_dir, self.device, progress=False,
                          budget=setup.budget, watch=watch, **options)
            distilled = time.perf_counter() - start
            result = evaluate(syn, self.dataset, setup.runs, setup.seed, setup.eval_config, self.device,
                              progress=False, on="val")
        except AVDistillError as exc:  # e.g. a learning rate that makes the loss diverge: a bad trial, not a crash
            trial.set_user_attr("error", str(exc))
            trial.set_user_attr("wall_seconds", round(time.perf_counter() - start, 3))
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            trial.set_user_attr("wall_seconds", round(time.perf_counter() - start, 3))
            raise
        trial.set_user_attr("val_accuracies", result.accuracies)
        trial.set_user_attr("distill_seconds", round(distilled, 3))
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - start, 3))
        return result.mean

    def _watch(self, trial, config) -> Watch | None:
        """Checks on the validation split at `checks` evenly spaced iterations, reported to the pruner."""
        iterations = getattr(config, "iterations", 0)
        if not self.setup.checks or iterations <= self.setup.checks:
            return None
        classes, prep, ipc = list(self.dataset.classes), self.dataset.preprocessing, self.setup.ipc
        labels = torch.arange(self.dataset.num_classes).repeat_interleave(ipc)  # the loop's rows, in class order
        factor = config.factor_for(ipc, self.dataset)  # a synthesis method's (only those have iterations)

        def check(done: int, audio: torch.Tensor, frames: torch.Tensor) -> None:
            syn = SyntheticSet(audio.cpu(), frames.cpu(), labels, classes, prep, factor=factor)
            accuracy = evaluate(syn, self.dataset, 1, self.setup.seed, self.setup.eval_config, self.device,
                                progress=False, on="val").mean
            trial.report(accuracy, done)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation accuracy {accuracy:.4f} after {done} iterations lags")

        return Watch(check=check, check_every=math.ceil(iterations / (self.setup.checks + 1)))
