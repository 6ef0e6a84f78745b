"""Paper-style result tables: rows are methods (or heads), columns are IPC settings, cells mean ± std;
and the retrieval table: one row per set, R@1 / R@5 / median rank per direction."""

from __future__ import annotations

import statistics

from tabulate import tabulate


def cell(accuracies: list[float], count: bool = False) -> str:
    """'mean ± std' in percent, as the papers print it; with `count`, the number of runs: '(n=6)'."""
    mean = 100 * statistics.fmean(accuracies)
    std = 100 * statistics.pstdev(accuracies) if len(accuracies) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}" + (f" (n={len(accuracies)})" if count else "")


def accuracy_table(results: dict[str, dict[str, list[float]]], columns: list[str], fmt: str = "github",
                   row_header: str = "method", counts: bool = False) -> str:
    """results[row][column] = accuracies (0..1). Missing cells print as '–'; `counts` adds each cell's n."""
    rows = [[name] + [cell(by_col[c], counts) if c in by_col else "–" for c in columns]
            for name, by_col in results.items()]
    return tabulate(rows, headers=[row_header] + columns, tablefmt=fmt, disable_numparse=True)


def retrieval_table(results: dict, fmt: str = "github") -> str:
    """results[row] = a RetrievalResult. R@K in percent, median rank as a number, each mean ± std over runs."""
    def spread(values: list[float], scale: float, digits: int) -> str:
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
        return f"{scale * statistics.fmean(values):.{digits}f} ± {scale * std:.{digits}f}"

    headers = ["set", "A→V R@1", "A→V R@5", "A→V MedR", "V→A R@1", "V→A R@5", "V→A MedR", "runs"]
    rows = [[name] + [spread(result.values(d, m), 1 if m == "median_rank" else 100, 1 if m == "median_rank" else 2)
                      for d in ("a2v", "v2a") for m in ("R@1", "R@5", "median_rank")] + [str(len(result.runs))]
            for name, result in results.items()]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
