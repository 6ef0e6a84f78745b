"""What every grid writes beside its tables: ``results.json`` (every record with its settings, the
command and the versions) and ``results.csv`` (one row per run and metric, for spreadsheets and plots)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

from avdistill.files import atomic_path, versions, write_json

CSV_COLUMNS = ("table", "row", "method", "ipc", "set", "head", "run", "metric", "value")


def csv_rows(records: list[dict], where: Callable[[dict], list] | None = None) -> list[list]:
    """One row per run and metric of each record: `where(record)` (default: table, row, method, ipc, set) and
    then head (or "contrastive"), run, metric, value."""
    where = where or _where
    rows = []
    for record in records:
        place = where(record)
        for r, acc in enumerate(record.get("accuracies", [])):
            rows.append([*place, record["settings"]["head"], r, "top1", acc])
        for r, run in enumerate(record.get("retrieval", [])):
            for direction, metrics in run.items():
                for metric, value in metrics.items():
                    rows.append([*place, "contrastive", r, f"{direction} {metric}", value])
    return rows


def _where(record: dict) -> list:
    st = record["settings"]
    return [record["table"], record["row"], st["method"], st.get("ipc") or "all",
            "" if st.get("set") is None else st["set"]]


def write_csv(path: str | Path, columns: tuple[str, ...], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def write_results(folder: Path, summary: dict, records: list[dict]) -> dict:
    """results.json (`summary` + the records + versions) and results.csv in `folder`; returns the JSON."""
    summary = {**summary, "cells": records, "versions": versions()}
    write_json(folder / "results.json", summary)
    write_csv(folder / "results.csv", CSV_COLUMNS, csv_rows(records))
    return summary
