"""The evaluation grid: one runner (:mod:`avdistill.grid.runner`) with its cell cache
(:mod:`avdistill.grid.cells`) behind ``demo``, ``bench`` (:mod:`avdistill.grid.bench`, with its
pictures, :mod:`avdistill.grid.pictures`) and multi-set ``evaluate``; the reports they write live
in :mod:`avdistill.reporting`."""
