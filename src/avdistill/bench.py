"""The benchmark grid: methods x IPC x synthetic sets x evaluation heads, cached cell by cell,
and a report people can read, look at and listen to.

Layout under ``out`` (the cache)::

    sets/<row>-ipc<k>-set<s>/      synthetic set, loss log (a distillation resumes from its checkpoint),
                                   initial.safetensors (the "before" set of the pictures)
    cells/<row>-ipc<k>-set<s>-<head>.json       one evaluated cell: accuracies of every run, configs, versions
    cells/<row>-ipc<k>-set<s>-retrieval.json    one retrieval cell: R@1, R@5, median rank of every run

and under ``report`` (default: ``out``): report.md, results.json, results.csv, pictures/.

A rerun skips every cell whose file exists with the same settings, so an interrupted grid
continues where it stopped. Set s of a method is distilled with seed ``seed + s``.

Report sections: the main table (rows: coresets, synthesis methods, whole data; per IPC the
columns A / V / AV = audio-only head, visual-only head and the first fusion head of the grid,
as in the AVDD paper's table), the fusion study (every head x IPC) when several heads are
evaluated, the ablation rows a method declares (``ABLATIONS`` on its config class: row label ->
option overrides, evaluated with the AV head), cross-modal retrieval, pictures and sound.
A method is a coreset when its config has no ``iterations`` (it selects real pairs, it does not
optimise them).

The pictures' "before" set is what the method started from: for a method whose config names an
``init`` it is rebuilt exactly as the shared initialisation builds it (same seed, init, IDM
factor and herding settings); otherwise the ``random`` coreset of the same seed and IPC.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import time
from pathlib import Path

from tqdm.auto import tqdm

from avdistill.data import load_dataset
from avdistill.errors import ConfigError, DataError
from avdistill.evaluation import EvalConfig, RetrievalConfig, evaluate, evaluate_whole_data, retrieval
from avdistill.evaluation.protocol import check_eval_config
from avdistill.evaluation.retrieval import RetrievalResult, check_retrieval_config
from avdistill.io import atomic_path, check_output_dir, versions, write_json
from avdistill.methods import SYNTHETIC_FILE, distill, get_method, make_config
from avdistill.models.heads import HEAD_NAMES
from avdistill.reporting.tables import accuracy_table, retrieval_table
from avdistill.synthetic import SyntheticSet, load_synthetic

INITIAL_FILE = "initial.safetensors"
WHOLE_DATA = "whole data"


@dataclasses.dataclass
class BenchGrid:
    data: str = "av-digits"
    methods: tuple[str, ...] = ("random", "dm")
    ipcs: tuple[int, ...] = (1, 10)
    heads: tuple[str, ...] = ("ensemble",)
    sets: int = 1
    runs: int = 3
    whole_data_runs: int = 1
    seed: int = 0
    method_options: dict = dataclasses.field(default_factory=dict)  # {method: {option: value}}
    eval_config: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    ablations: tuple[str, ...] = ()  # methods whose declared ablation rows to run
    retrieval: bool = False
    retrieval_config: RetrievalConfig = dataclasses.field(default_factory=RetrievalConfig)
    pictures: bool = True  # per synthesis method, at `picture_ipc`, set 0
    picture_ipc: int = 0  # 0: the largest IPC of the grid
    clips_per_class: int = 1  # WAV and mp4 files per class and method in the report (0: none)
    videos: bool = True
    griffin_lim_iters: int = 32


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table: a method with options; `key` names its folders and cells."""

    table: str  # "main" or the method whose ablation this row is
    label: str
    method: str
    options: dict
    key: str


def ablation_rows(method: str) -> dict[str, dict]:
    """The ablation rows a method declares: row label -> option overrides."""
    rows = getattr(get_method(method).config_class, "ABLATIONS", None)
    if not rows:
        raise ConfigError(f"--ablations {method}: the method declares no ablation rows (ABLATIONS on its config)")
    return rows


def is_coreset(method: str) -> bool:
    return "iterations" not in {f.name for f in dataclasses.fields(get_method(method).config_class)}


def av_head(heads: tuple[str, ...]) -> str:
    """The head of the AV column and of ablation rows: the first fusion head, else the last head."""
    return next((h for h in heads if h not in ("a", "v")), heads[-1])


def grid_rows(grid: BenchGrid) -> list[Row]:
    rows = [Row("main", m, m, dict(grid.method_options.get(m, {})), m) for m in grid.methods]
    for method in grid.ablations:
        base = grid.method_options.get(method, {})
        for label, overrides in ablation_rows(method).items():
            options = {**base, **overrides}
            slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
            key = method if options == base else f"{method}-ablation-{slug}"
            rows.append(Row(method, label, method, options, key))
    return rows


def _cached(path: Path, settings: dict) -> dict | None:
    """The cell stored at `path` if it was computed with exactly `settings` (compared as JSON).

    An unreadable cell file is recomputed (and replaced), as a cache entry should be.
    """
    if path.exists():
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            tqdm.write(f"recomputing {path}: unreadable ({exc})")
            return None
        if isinstance(record, dict) and record.get("settings") == json.loads(json.dumps(settings)):
            return record
    return None


def _as_json(obj):
    return json.loads(json.dumps(obj))


def _synthetic_set(dataset, grid: BenchGrid, row: Row, ipc: int, s: int, out: Path, device: str,
                   progress: bool) -> SyntheticSet:
    """Distil one set, or load it if a finished one with the same settings is on disk."""
    config = _as_json(dataclasses.asdict(make_config(get_method(row.method), row.options)))
    folder = out / "sets" / f"{row.key}-ipc{ipc}-set{s}"
    wanted = (row.method, config, grid.seed + s, dataset.checksum)
    if (folder / SYNTHETIC_FILE).exists():
        try:
            syn = load_synthetic(folder / SYNTHETIC_FILE)
        except DataError as exc:  # a damaged cached set is distilled again
            tqdm.write(f"distilling again: {exc}")
        else:
            meta = syn.meta
            if (meta.get("method"), meta.get("config"), meta.get("seed"),
                    meta.get("source", {}).get("sha256")) == wanted:
                return syn
    distill(dataset, row.method, ipc, grid.seed + s, folder, device, progress, **row.options)
    return load_synthetic(folder / SYNTHETIC_FILE)  # loaded back: it knows its path (and so its loss log)


def initial_set(dataset, syn: SyntheticSet) -> SyntheticSet:
    """The set `syn`'s method started from (see the module docstring), cached beside it."""
    from avdistill.methods.init import HerdingFeatures, initial_synthetic

    path = Path(syn.path).parent / INITIAL_FILE
    meta = syn.meta
    cfg = meta["config"]
    if path.exists():
        before = load_synthetic(path)
        if before.meta.get("of") == {"config": cfg, "seed": meta["seed"], "method": meta["method"]}:
            return before
    if "init" in cfg:
        defaults = HerdingFeatures()
        herding = HerdingFeatures(cfg.get("herding_space", defaults.space), cfg.get("encoder", defaults.encoder),
                                  cfg.get("herding_epochs", defaults.epochs))
        factor = cfg.get("factor", 1)
        audio, frames, labels = initial_synthetic(dataset, meta["ipc"], cfg["init"], meta["seed"], factor, herding)
        what = f"the method's initialisation (init={cfg['init']}, factor {factor}, seed {meta['seed']})"
    else:
        random = distill(dataset, "random", meta["ipc"], meta["seed"], progress=False)
        audio, frames, labels, factor = random.audio, random.frames, random.labels, 1
        what = f"the random coreset of seed {meta['seed']}"
    before = SyntheticSet(audio, frames, labels, list(dataset.classes), dataset.preprocessing,
                          {"what": what, "of": {"config": cfg, "seed": meta["seed"], "method": meta["method"]},
                           "versions": versions()}, factor=factor)
    before.save(path)
    return load_synthetic(path)


def _settings(grid: BenchGrid, dataset, row: Row | None, ipc: int | None, s: int | None, **extra) -> dict:
    """What a cell's numbers depend on (a main-table row and an ablation row with equal options share cells)."""
    settings = {"method": row.method if row is not None else WHOLE_DATA, "seed": grid.seed,
                "dataset": dataset.checksum, **extra}
    if row is not None:
        settings.update({"ipc": ipc, "set": s, "method_options": row.options})
    return _as_json(settings)


def _tagged(record: dict, table: str, row: str) -> dict:
    """A cell as the report uses it: which table and row it fills."""
    return {"table": table, "row": row, **record}


def run_bench(grid: BenchGrid, out: str | Path, device: str = "cpu", progress: bool = True,
              report: str | Path | None = None, command: str = "", verify: bool = True) -> dict:
    """Fill the grid (skipping cached cells) and write the report; returns the results summary."""
    out = check_output_dir(out)
    for what, values in (("--methods", grid.methods), ("--ipc", grid.ipcs), ("--heads", grid.heads)):
        if not values:
            raise ConfigError(f"{what} is empty: give at least one, comma-separated")
    if min(grid.ipcs) < 1:
        raise ConfigError(f"--ipc values must be >= 1, got {', '.join(map(str, grid.ipcs))}")
    for head in grid.heads:
        check_eval_config(dataclasses.replace(grid.eval_config, head=head))
    if grid.retrieval:
        check_retrieval_config(grid.retrieval_config)
    rows = grid_rows(grid)
    for row in rows:
        make_config(get_method(row.method), row.options)  # fail fast on bad options
    if grid.picture_ipc and grid.picture_ipc not in grid.ipcs:
        raise ConfigError(f"--picture-ipc {grid.picture_ipc} is not one of the grid's IPCs {list(grid.ipcs)}")
    dataset = load_dataset(grid.data, mmap=True, verify=verify)  # mapped, as the commands do (cli.common.load_data)
    cells: list[dict] = []
    jobs = [(row, ipc, s) for row in rows for ipc in grid.ipcs for s in range(grid.sets)]
    for row, ipc, s in tqdm(jobs, desc="bench", disable=not progress, dynamic_ncols=True):
        heads = grid.heads if row.table == "main" else (av_head(grid.heads),)
        syn = None
        for head in heads:
            cfg = dataclasses.replace(grid.eval_config, head=head)
            settings = _settings(grid, dataset, row, ipc, s, head=head, runs=grid.runs, eval=dataclasses.asdict(cfg))
            path = out / "cells" / f"{row.key}-ipc{ipc}-set{s}-{head}.json"
            record = _cached(path, settings)
            if record is None:
                if syn is None:
                    syn = _synthetic_set(dataset, grid, row, ipc, s, out, device, progress)
                t0 = time.perf_counter()
                result = evaluate(syn, dataset, grid.runs, grid.seed + 1000 * s, cfg, device, progress=False)
                record = {"settings": settings, "accuracies": result.accuracies,
                          "distill_seconds": syn.meta.get("wall_seconds"),
                          "evaluate_seconds": round(time.perf_counter() - t0, 2), "versions": versions()}
                write_json(path, record)
            cells.append(_tagged(record, row.table, row.label))
        if grid.retrieval and row.table == "main":
            settings = _settings(grid, dataset, row, ipc, s, kind="retrieval", runs=grid.runs,
                                 eval=dataclasses.asdict(grid.eval_config),
                                 retrieval=dataclasses.asdict(grid.retrieval_config))
            path = out / "cells" / f"{row.key}-ipc{ipc}-set{s}-retrieval.json"
            record = _cached(path, settings)
            if record is None:
                if syn is None:
                    syn = _synthetic_set(dataset, grid, row, ipc, s, out, device, progress)
                result = retrieval(syn, dataset, grid.runs, grid.seed + 1000 * s, grid.eval_config,
                                   grid.retrieval_config, device, progress=False)
                record = {"settings": settings, "retrieval": result.runs, "versions": versions()}
                write_json(path, record)
            cells.append(_tagged(record, row.table, row.label))
    if grid.whole_data_runs > 0:
        whole_heads = [(h, f"whole-data-{h}.json") for h in grid.heads]
        for head, name in tqdm(whole_heads, desc="whole data", disable=not progress, dynamic_ncols=True):
            cfg = dataclasses.replace(grid.eval_config, head=head)
            settings = _settings(grid, dataset, None, None, None, head=head, runs=grid.whole_data_runs,
                                 eval=dataclasses.asdict(cfg))
            record = _cached(out / "cells" / name, settings)
            if record is None:
                t0 = time.perf_counter()
                result = evaluate_whole_data(dataset, grid.whole_data_runs, grid.seed, cfg, device, progress=False)
                record = {"settings": settings, "accuracies": result.accuracies,
                          "evaluate_seconds": round(time.perf_counter() - t0, 2), "versions": versions()}
                write_json(out / "cells" / name, record)
            cells.append(_tagged(record, "main", WHOLE_DATA))
        if grid.retrieval:
            settings = _settings(grid, dataset, None, None, None, kind="retrieval", runs=grid.whole_data_runs,
                                 eval=dataclasses.asdict(grid.eval_config),
                                 retrieval=dataclasses.asdict(grid.retrieval_config))
            path = out / "cells" / "whole-data-retrieval.json"
            record = _cached(path, settings)
            if record is None:
                result = retrieval(None, dataset, grid.whole_data_runs, grid.seed, grid.eval_config,
                                   grid.retrieval_config, device, progress=False)
                record = {"settings": settings, "retrieval": result.runs, "versions": versions()}
                write_json(path, record)
            cells.append(_tagged(record, "main", WHOLE_DATA))
    report = Path(report) if report is not None else out
    pictures = write_pictures(grid, dataset, rows, out, report, device, progress) if grid.pictures else []
    return write_report(grid, dataset, cells, pictures, report, command)


def write_pictures(grid: BenchGrid, dataset, rows: list[Row], out: Path, report: Path, device: str,
                   progress: bool) -> list[dict]:
    """For every synthesis method of the main table: before/after grids, loss curves, embeddings, sound."""
    from avdistill.reporting.show import show

    ipc = grid.picture_ipc or max(grid.ipcs)
    written = []
    for row in rows:
        if row.table != "main" or is_coreset(row.method):
            continue
        syn = _synthetic_set(dataset, grid, row, ipc, 0, out, device, progress)
        before = initial_set(dataset, syn)
        folder = report / "pictures" / f"{row.key}-ipc{ipc}"
        files = show(syn, folder, before, grid.videos, grid.griffin_lim_iters, progress, dataset,
                     clips_per_class=grid.clips_per_class)
        written.append({"row": row.label, "ipc": ipc, "before": before.meta["what"], "files": files})
    return written


def _matches(cell: dict, match: dict) -> bool:
    return all((cell[k] if k in ("table", "row") else cell["settings"].get(k)) == v for k, v in match.items())


def _pool(cells: list[dict], **match) -> list[float]:
    """All accuracies of the cells matching `match` (keys: table, row, or any setting)."""
    return [a for c in cells if "accuracies" in c and _matches(c, match) for a in c["accuracies"]]


def _retrieval_pool(cells: list[dict], **match) -> RetrievalResult | None:
    runs = [r for c in cells if "retrieval" in c and _matches(c, match) for r in c["retrieval"]]
    return RetrievalResult(runs) if runs else None


def _link(path: str | Path, report: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), report.resolve())).as_posix()


def write_report(grid: BenchGrid, dataset, cells: list[dict], pictures: list[dict], report: Path,
                 command: str = "") -> dict:
    """report.md (main table, fusion study, ablations, retrieval, pictures), results.json and results.csv."""
    accuracy_cells = [c for c in cells if "accuracies" in c]
    main_methods = list(grid.methods)
    columns_of = {"a": "A", "v": "V"}
    fusion = av_head(grid.heads)
    modalities = [h for h in ("a", "v") if h in grid.heads] + ([fusion] if fusion not in ("a", "v") else [])
    label = lambda h: columns_of.get(h, f"AV ({HEAD_NAMES[h]})")  # noqa: E731
    main_columns = [f"IPC {k} {label(h)}" for k in grid.ipcs for h in modalities]
    main: dict[str, dict[str, list[float]]] = {}
    for kind, methods in (("coreset", [m for m in main_methods if is_coreset(m)]),
                          ("synthesis", [m for m in main_methods if not is_coreset(m)])):
        for m in methods:
            main[f"{m} ({kind})"] = {f"IPC {k} {label(h)}": acc for k in grid.ipcs for h in modalities
                                     if (acc := _pool(accuracy_cells, table="main", method=m, ipc=k, head=h))}
    whole = {h: _pool(accuracy_cells, method=WHOLE_DATA, head=h) for h in modalities}
    if any(whole.values()):
        main[WHOLE_DATA] = {f"IPC {k} {label(h)}": whole[h] for k in grid.ipcs for h in modalities if whole[h]}
    n_per_cell = f"{grid.sets} set(s) × {grid.runs} run(s)"
    lines = [f"# Benchmark: {dataset.name}", "",
             f"Dataset `{grid.data}` (sha256 {dataset.checksum[:12]}…), {dataset.num_classes} classes, "
             f"{len(dataset.train)} training / {len(dataset.split(grid.eval_config.on))} {grid.eval_config.on} pairs. "
             f"Every number is the {grid.eval_config.on} accuracy "
             f"(%) as mean ± std over the pooled evaluation runs, with their count n ({n_per_cell} per synthetic "
             f"cell, {grid.whole_data_runs} run(s) per head for whole data). Seeds: set s is distilled with seed "
             f"{grid.seed} + s.", ""]
    if command:
        lines += ["Regenerate (finished cells are cached, a rerun continues):", "", "```bash", command, "```", ""]
    lines += ["## Settings", ""]
    for m in dict.fromkeys([*grid.methods, *grid.ablations]):
        cfg = dataclasses.asdict(make_config(get_method(m), grid.method_options.get(m, {})))
        default = dataclasses.asdict(make_config(get_method(m), {}))
        given = grid.method_options.get(m, {})
        budget = ", ".join(f"`{k}={cfg[k]}`" + (f" (default {default[k]})" if cfg[k] != default[k] else "")
                           for k in ("iterations", "real_per_class", "feature_epochs", "herding_epochs") if k in cfg)
        lines.append(f"- **{m}**: options given {_fmt_options(given) or '(defaults)'}; budget "
                     f"{budget or '(none: selects real pairs)'}")
    lines += [f"- evaluation: {_fmt_options(_changed(grid.eval_config))  or 'the AVDD protocol defaults'} "
              f"({grid.eval_config.epochs} epochs, batch {grid.eval_config.batch_size}, encoder "
              f"`{grid.eval_config.encoder}`); heads {', '.join(grid.heads)}", ""]
    lines += ["## Main table", "",
              f"A = audio-only head, V = visual-only head, AV = the {HEAD_NAMES[fusion]} head. Coresets select real "
              "pairs; synthesis methods optimise them; whole data trains on the full training split (one upper "
              "bound, repeated under every IPC).", "",
              accuracy_table(main, main_columns, counts=True), ""]
    if len(grid.heads) > 1:
        study: dict[str, dict[str, list[float]]] = {}
        for m in main_methods + ([WHOLE_DATA] if any(whole.values()) else []):
            for h in grid.heads:
                if m == WHOLE_DATA:
                    acc = _pool(accuracy_cells, method=WHOLE_DATA, head=h)
                    study[f"{m} / {HEAD_NAMES[h]}"] = {"all": acc} if acc else {}
                else:
                    study[f"{m} / {HEAD_NAMES[h]}"] = {f"IPC {k}": acc for k in grid.ipcs
                                                       if (acc := _pool(accuracy_cells, table="main", method=m,
                                                                        ipc=k, head=h))}
        lines += ["## Fusion study", "", "Every evaluation head on every set (rows: method / head).", "",
                  accuracy_table(study, [f"IPC {k}" for k in grid.ipcs] + (["all"] if any(whole.values()) else []),
                                 row_header="method / head", counts=True), ""]
    for method in grid.ablations:
        table = {label_: {f"IPC {k}": acc for k in grid.ipcs
                          if (acc := _pool(accuracy_cells, table=method, row=label_, ipc=k))}
                 for label_ in ablation_rows(method)}
        lines += [f"## Ablation: {method}", "",
                  f"The rows {method} declares (option overrides on top of the settings above), "
                  f"{HEAD_NAMES[av_head(grid.heads)]} head.", ""]
        lines += [f"- {name}: {_fmt_options(o) or '(the defaults)'}" for name, o in ablation_rows(method).items()]
        lines += ["", accuracy_table(table, [f"IPC {k}" for k in grid.ipcs], row_header="row", counts=True), ""]
    if grid.retrieval:
        results = {f"{m} IPC {k}": r for m in main_methods for k in grid.ipcs
                   if (r := _retrieval_pool(cells, table="main", method=m, ipc=k))}
        if (r := _retrieval_pool(cells, method=WHOLE_DATA)) is not None:
            results[WHOLE_DATA] = r
        rc = grid.retrieval_config
        lines += ["## Cross-modal retrieval", "",
                  f"Contrastive training on each set, retrieval on the real test split (positives `{rc.positives}`, "
                  f"relevance `{rc.match}`, see docs/EVALUATION.md). R@K in %, median rank (MedR) of the first "
                  "relevant item; mean ± std over the runs.", "", retrieval_table(results), ""]
    if pictures:
        lines += ["## Pictures and sound", ""]
        for p in pictures:
            files = p["files"]
            lines += [f"### {p['row']}, IPC {p['ipc']}, set 0", "",
                      f"Before = {p['before']}; after = the distilled set. One row per class.", ""]
            for key, title in (("frames", "frames"), ("spectrograms", "log-mel spectrograms"),
                               ("losses", "loss terms per iteration (losses.jsonl)"),
                               ("embeddings", "real vs synthetic embeddings")):
                if key in files:
                    lines += [f"![{p['row']} {title}]({_link(files[key], report)})", ""]
            if files["audio"]:
                clips = [f"[{Path(a).stem}.wav]({_link(a, report)})" for a in files["audio"]]
                if files["video"]:
                    clips = [f"{c} / [mp4]({_link(v, report)})" for c, v in zip(clips, files["video"])]
                lines += ["Listen (Griffin-Lim inversion of the distilled log-mel; mp4 = frame + sound): "
                          + ", ".join(clips), ""]
    seconds: dict[str, list[float]] = {}
    for c in accuracy_cells:
        st = c["settings"]
        if st.get("ipc") is not None and c.get("distill_seconds") is not None and c["table"] == "main":
            seconds.setdefault(f"{st['method']} IPC {st['ipc']}", []).append(c["distill_seconds"])
    if seconds:
        lines += ["## Distillation wall time (s per synthetic set)", "",
                  "Feature networks (herding, k-center, herding init) are trained once per process and seed, so "
                  "the first set that needs them pays for them.", ""]
        lines += [f"- {k}: {sum(v) / len(v):.1f}" for k, v in seconds.items()] + [""]
    report.mkdir(parents=True, exist_ok=True)
    with atomic_path(report / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["table", "row", "method", "ipc", "set", "head", "run", "metric", "value"])
    for c in cells:
        st = c["settings"]
        where = [c["table"], c["row"], st["method"], st.get("ipc") or "all",
                 "" if st.get("set") is None else st["set"]]
        for r, acc in enumerate(c.get("accuracies", [])):
            writer.writerow([*where, st["head"], r, "top1", acc])
        for r, run in enumerate(c.get("retrieval", [])):
            for direction, metrics in run.items():
                for metric, value in metrics.items():
                    writer.writerow([*where, "contrastive", r, f"{direction} {metric}", value])
    with atomic_path(report / "results.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    summary = {"grid": _as_json(dataclasses.asdict(grid)), "command": command, "cells": cells,
               "pictures": [{**p, "files": _as_json(p["files"])} for p in pictures], "versions": versions()}
    write_json(report / "results.json", summary)
    return summary


def _changed(config) -> dict:
    """The fields of a config dataclass that differ from their defaults."""
    default = type(config)()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(default, f.name) and f.name != "head"}


def _fmt_options(options: dict) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in options.items())
