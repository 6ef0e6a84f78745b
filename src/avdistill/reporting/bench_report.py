"""The bench report (report.md): the main table (rows: coresets, synthesis methods, whole data; per
IPC the columns A / V / AV = audio-only head, visual-only head and the first fusion head of the
grid, as in the AVDD paper's table), the fusion study (every head x IPC) when several heads are
evaluated, the ablation rows a method declares (evaluated with the AV head), cross-modal
retrieval, pictures and sound, and distillation times (without caches, and what each cache costs,
whichever run filled it). It reads the grid runner's records.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tabulate import tabulate

from avdistill.config import flat_dict
from avdistill.evaluation import RetrievalResult
from avdistill.methods import get_method, make_config
from avdistill.models.heads import HEAD_NAMES
from avdistill.reporting.tables import accuracy_table, retrieval_table
from avdistill.spread import mean_std

WHOLE_DATA = "whole data"
CACHE_NAMES = {"real-means": "real means", "davdd-bank": "DAVDD bank", "mtt-experts": "MTT experts",
               "features": "coreset features"}  # kinds of avdistill.cache.TensorCache


def av_head(heads: tuple[str, ...]) -> str:
    """The head of the AV column and of ablation rows: the first fusion head, else the last head."""
    return next((h for h in heads if h not in ("a", "v")), heads[-1])


def _matches(cell: dict, match: dict) -> bool:
    return all((cell[k] if k in ("table", "row") else cell["settings"].get(k)) == v for k, v in match.items())


def pool(cells: list[dict], branch: str = "", **match) -> list[float]:
    """All accuracies of the cells matching `match` (keys: table, row, or any setting); with `branch`
    ("a" or "v"), those of that branch alone of the cells' ensemble heads (see EnsembleHead)."""
    if branch:
        return [a for c in cells if branch in c.get("branch_accuracies", {}) and _matches(c, match)
                for a in c["branch_accuracies"][branch]]
    return [a for c in cells if "accuracies" in c and _matches(c, match) for a in c["accuracies"]]


def retrieval_pool(cells: list[dict], **match) -> RetrievalResult | None:
    runs = [r for c in cells if "retrieval" in c and _matches(c, match) for r in c["retrieval"]]
    return RetrievalResult(runs) if runs else None


def bench_report(grid, dataset, cells: list[dict], pictures: list[dict], report: Path, command: str = "",
                 commit: str = "") -> str:
    """report.md's text for a finished `grid` (a :class:`avdistill.grid.bench.BenchGrid`); `commit`: the code's."""
    sections = [_header(grid, dataset, command, commit), _settings(grid), _main_table(grid, cells)]
    if len(grid.heads) > 1:
        sections.append(_fusion_study(grid, cells))
    sections += [_ablation(grid, method, cells) for method in grid.ablations]
    if grid.retrieval:
        sections.append(_retrieval(grid, cells))
    if pictures:
        sections.append(_pictures(pictures, report))
    sections.append(_wall_times(cells))
    return "\n".join(line for section in sections for line in section)


def _header(grid, dataset, command: str, commit: str) -> list[str]:
    n_per_cell = f"{grid.sets} set(s) × {grid.runs} run(s)"
    lines = [f"# Benchmark: {dataset.name}", "",
             f"Dataset `{grid.data}` (sha256 {dataset.checksum[:12]}…), {dataset.num_classes} classes, "
             f"{len(dataset.train)} training / {len(dataset.split(grid.eval_config.on))} {grid.eval_config.on} pairs. "
             f"Every number is the {grid.eval_config.on} accuracy "
             f"(%) as mean ± std over the pooled evaluation runs (one run: its value alone), with their count n "
             f"({n_per_cell} per synthetic "
             f"cell, {grid.whole_data_runs} run(s) per head for whole data). Seeds: set s is distilled with seed "
             f"{grid.seed} + s.", ""]
    if commit:
        lines += [f"Code: commit {commit}.", ""]
    if command:
        lines += ["Regenerate (finished cells are cached, a rerun continues):", "", "```bash", command, "```", ""]
    return lines


def _settings(grid) -> list[str]:
    lines = ["## Settings", ""]
    for m in dict.fromkeys([*grid.methods, *grid.ablations]):
        given = grid.method_options.get(m, {})
        cfg = flat_dict(make_config(get_method(m), given))
        default = flat_dict(make_config(get_method(m), {}))
        budget = ", ".join(f"`{k}={cfg[k]}`" + (f" (default {default[k]})" if cfg[k] != default[k] else "")
                           for k in ("iterations", "real_per_class", "feature_epochs", "herding_epochs") if k in cfg)
        lines.append(f"- **{m}**: options given {_fmt_options(given) or '(defaults)'}; budget "
                     f"{budget or '(none: selects real pairs)'}")
    lines += [f"- evaluation: {_fmt_options(_changed(grid.eval_config)) or 'the AVDD protocol defaults'} "
              f"({grid.eval_config.epochs} epochs, batch {grid.eval_config.batch_size}, encoder "
              f"`{grid.eval_config.encoder}`); heads {', '.join(grid.heads)}", ""]
    return lines


def _main_table(grid, cells: list[dict]) -> list[str]:
    fusion = av_head(grid.heads)
    # A and V: their own heads' cells when evaluated, else the ensemble's branches (the same trainings, exactly)
    branches = fusion == "ensemble" and not {"a", "v"} & set(grid.heads)
    modalities = [h for h in ("a", "v") if h in grid.heads or branches] + ([fusion] if fusion not in ("a", "v") else [])
    label = lambda h: {"a": "A", "v": "V"}.get(h, f"AV ({HEAD_NAMES[h]})")  # noqa: E731

    def accuracies(h: str, **match) -> list[float]:
        return pool(cells, head=h, **match) if h in grid.heads else pool(cells, branch=h, head=fusion, **match)

    columns = [f"IPC {k} {label(h)}" for k in grid.ipcs for h in modalities]
    main: dict[str, dict[str, list[float]]] = {}
    for kind in ("coreset", "synthesis"):
        for m in (m for m in grid.methods if get_method(m).kind == kind):
            main[f"{m} ({kind})"] = {f"IPC {k} {label(h)}": acc for k in grid.ipcs for h in modalities
                                     if (acc := accuracies(h, table="main", method=m, ipc=k))}
    whole = {h: accuracies(h, method=WHOLE_DATA) for h in modalities}
    if any(whole.values()):
        main[WHOLE_DATA] = {f"IPC {k} {label(h)}": whole[h] for k in grid.ipcs for h in modalities if whole[h]}
    heads = ("A = the ensemble's audio branch alone, V = its visual branch alone (each trains exactly as the "
             "audio-only / visual-only head would: the ensemble's loss is the sum of the branches' losses), "
             "AV = the ensemble head" if branches else
             f"A = audio-only head, V = visual-only head, AV = the {HEAD_NAMES[fusion]} head")
    return ["## Main table", "",
            f"{heads}. Coresets select real "
            "pairs; synthesis methods optimise them; whole data trains on the full training split (one upper "
            "bound, repeated under every IPC).", "",
            accuracy_table(main, columns, counts=True), ""]


def _fusion_study(grid, cells: list[dict]) -> list[str]:
    has_whole = bool(pool(cells, method=WHOLE_DATA))
    study: dict[str, dict[str, list[float]]] = {}
    for m in list(grid.methods) + ([WHOLE_DATA] if has_whole else []):
        for h in grid.heads:
            if m == WHOLE_DATA:
                acc = pool(cells, method=WHOLE_DATA, head=h)
                study[f"{m} / {HEAD_NAMES[h]}"] = {"all": acc} if acc else {}
            else:
                study[f"{m} / {HEAD_NAMES[h]}"] = {f"IPC {k}": acc for k in grid.ipcs
                                                   if (acc := pool(cells, table="main", method=m, ipc=k, head=h))}
    return ["## Fusion study", "", "Every evaluation head on every set (rows: method / head).", "",
            accuracy_table(study, [f"IPC {k}" for k in grid.ipcs] + (["all"] if has_whole else []),
                           row_header="method / head", counts=True), ""]


def _ablation(grid, method: str, cells: list[dict]) -> list[str]:
    rows = get_method(method).ablations
    table = {label: {f"IPC {k}": acc for k in grid.ipcs if (acc := pool(cells, table=method, row=label, ipc=k))}
             for label in rows}
    return [f"## Ablation: {method}", "",
            f"The rows {method} declares (option overrides on top of the settings above), "
            f"{HEAD_NAMES[av_head(grid.heads)]} head.", "",
            *(f"- {name}: {_fmt_options(o) or '(the defaults)'}" for name, o in rows.items()),
            "", accuracy_table(table, [f"IPC {k}" for k in grid.ipcs], row_header="row", counts=True), ""]


def _retrieval(grid, cells: list[dict]) -> list[str]:
    results = {f"{m} IPC {k}": r for m in grid.methods for k in grid.ipcs
               if (r := retrieval_pool(cells, table="main", method=m, ipc=k))}
    if (r := retrieval_pool(cells, method=WHOLE_DATA)) is not None:
        results[WHOLE_DATA] = r
    rc = grid.retrieval_config
    return ["## Cross-modal retrieval", "",
            f"Contrastive training on each set, retrieval on the real test split (positives `{rc.positives}`, "
            f"relevance `{rc.match}`, see docs/EVALUATION.md). R@K in %, median rank (MedR) of the first "
            "relevant item; mean ± std over the runs.", "", retrieval_table(results), ""]


def _pictures(pictures: list[dict], report: Path) -> list[str]:
    lines = ["## Pictures and sound", ""]
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
    return lines


def _wall_times(cells: list[dict]) -> list[str]:
    """Per method and IPC (mean ± std over its sets): the set's time without caches, each cache's cost (the
    seconds it took to fill, in this run or the earlier one whose entry was reused) and their sum, the cold time."""
    sets: dict[str, dict[int, dict]] = {}
    for c in cells:
        st = c["settings"]
        if st.get("ipc") is not None and c.get("distill_seconds") is not None and c["table"] == "main":
            sets.setdefault(f"{st['method']} IPC {st['ipc']}", {})[st["set"]] = c
    if not sets:
        return []
    kinds = sorted({k for by_set in sets.values() for c in by_set.values()
                    for part in (c.get("cache_seconds") or {}).values() for k in part})
    rows = []
    for name, by_set in sets.items():
        wall = [c["distill_seconds"] for c in by_set.values()]
        if any(c.get("cache_seconds") is None for c in by_set.values()):  # sets made before caches were timed
            rows.append([name, mean_std(wall, 1, 1), *["not recorded"] * (len(kinds) + 3)])
            continue
        own, cold, costs, reused = [], [], {k: [] for k in kinds}, set()
        for c in by_set.values():
            caches = c["cache_seconds"]
            own.append(c["distill_seconds"] - sum(caches["filled"].values()))
            for k in kinds:
                costs[k].append(caches["filled"].get(k, 0.0) + caches["reused"].get(k, 0.0))
            cold.append(own[-1] + sum(costs[k][-1] for k in kinds))
            reused |= {CACHE_NAMES.get(k, k) for k in caches["reused"]}
        peaks = [(c.get("peak_memory_mib") or {}).get("rss_mib") for c in by_set.values()]
        rows.append([name, mean_std(wall, 1, 1), mean_std(own, 1, 1), *(mean_std(costs[k], 1, 1) if any(costs[k]) else "–" for k in kinds),
                     mean_std(cold, 1, 1), ", ".join(sorted(reused)) or "–",
                     mean_std(peaks, 1, 0) if None not in peaks else "not recorded"])
    headers = ["set", "wall (s)", "without caches (s)", *(f"{CACHE_NAMES.get(k, k)} (s)" for k in kinds), "cold (s)",
               "reused from the cache", "peak memory (MiB)"]
    return ["## Distillation time (s per synthetic set)", "",
            "Wall: the set's distillation as it ran. Without caches: its wall time less the seconds it spent "
            "filling caches. A cache column is "
            "what that cache's entries cost to compute, whether this set filled them or reused them from an "
            "earlier set or run (their recorded cost); cold = without caches + every cache column, the time "
            "on an empty cache. So no figure depends on the order the sets ran in. Peak memory: the process's "
            "peak resident memory while the set was distilled (avdistill.memory). Mean ± std over the sets.",
            "", tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]


def _link(path: str | Path, report: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), report.resolve())).as_posix()


def _changed(config) -> dict:
    """The fields of a config dataclass that differ from their defaults."""
    default = type(config)()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(default, f.name) and f.name != "head"}


def _fmt_options(options: dict) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in options.items())
