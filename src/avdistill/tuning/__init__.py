"""``avdistill tune``: search a method's settings on the validation split with Optuna (see :mod:`.study`),
and write what was found (see :mod:`.report`)."""

from avdistill.tuning.report import next_commands, write_outputs
from avdistill.tuning.study import TuneSetup, open_study, run_study, storage_url

__all__ = ["TuneSetup", "next_commands", "open_study", "run_study", "storage_url", "write_outputs"]
