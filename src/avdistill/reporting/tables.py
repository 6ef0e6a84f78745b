"""Paper-style result tables: rows are methods (or heads), columns are IPC settings, cells mean ± std (n)
(:mod:`avdistill.spread`: a single run without ±); and the retrieval table: one row per set, R@1 / R@5 /
median rank per direction."""

from __future__ import annotations

from tabulate import tabulate

from avdistill.spread import mean_std


def accuracy_table(results: dict[str, dict[str, list[float]]], columns: list[str], fmt: str = "github",
                   row_header: str = "method", counts: bool = True) -> str:
    """results[row][column] = accuracies (0..1), in percent. Missing cells print as '–'; `counts`: each cell's n."""
    rows = [[name] + [mean_std(by_col[c], count=counts) if c in by_col else "–" for c in columns]
            for name, by_col in results.items()]
    return tabulate(rows, headers=[row_header] + columns, tablefmt=fmt, disable_numparse=True)


def retrieval_table(results: dict, fmt: str = "github") -> str:
    """results[row] = a RetrievalResult. R@K in percent, median rank as a number, each mean ± std over the runs
    (their count in the last column)."""
    def spread(values: list[float], scale: float, digits: int) -> str:
        return mean_std(values, scale, digits, count=False)

    headers = ["set", "A→V R@1", "A→V R@5", "A→V MedR", "V→A R@1", "V→A R@5", "V→A MedR", "runs"]
    rows = [[name] + [spread(result.values(d, m), 1 if m == "median_rank" else 100, 1 if m == "median_rank" else 2)
                      for d in ("a2v", "v2a") for m in ("R@1", "R@5", "median_rank")] + [str(len(result.runs))]
            for name, result in results.items()]
    return tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
