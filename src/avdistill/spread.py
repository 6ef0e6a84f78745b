"""How every table and message prints repeated measurements: 'mean ± std (n=N)'; a single run
has no spread to show, so it prints as 'mean (n=1)', never as '± 0.00'."""

from __future__ import annotations

import statistics


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2, count: bool = True) -> str:
    """'mean ± std' of `values` x `scale` (population std, as the papers), with '(n=N)' when `count`."""
    mean = f"{scale * statistics.fmean(values):.{digits}f}"
    text = mean if len(values) == 1 else f"{mean} ± {scale * statistics.pstdev(values):.{digits}f}"
    return text + (f" (n={len(values)})" if count else "")
