"""avdistill: audio-visual dataset distillation.

The few-line API::

    import avdistill
    data = avdistill.load_dataset("av-digits")             # the embedded default dataset
    syn = avdistill.distill(data, method="dm", ipc=10)      # a SyntheticSet
    result = avdistill.evaluate(syn, data, runs=3)          # mean ± std test accuracy
"""

from avdistill.data import AVDataset, load_dataset
from avdistill.evaluation import evaluate
from avdistill.methods import distill
from avdistill.synthetic import SyntheticSet, load_synthetic
from avdistill.version import __version__

__all__ = ["AVDataset", "SyntheticSet", "load_dataset", "load_synthetic", "distill", "evaluate", "__version__"]
