"""Paper-style result tables: rows are methods, columns are IPC settings, cells mean ± std."""

from __future__ import annotations

from tabulate import tabulate


def cell(accuracies: list[float]) -> str:
    """'mean ± std' in percent, as the papers print it."""
    import statistics

    mean = 100 * statistics.fmean(accuracies)
    std = 100 * statistics.pstdev(accuracies) if len(accuracies) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def accuracy_table(results: dict[str, dict[str, list[float]]], columns: list[str], fmt: str = "github") -> str:
    """results[row][column] = accuracies (0..1). Missing cells print as '–'."""
    rows = [[name] + [cell(by_col[c]) if c in by_col else "–" for c in columns] for name, by_col in results.items()]
    return tabulate(rows, headers=["method"] + columns, tablefmt=fmt, disable_numparse=True)
