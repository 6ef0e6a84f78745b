"""avdistill: audio-visual dataset distillation.

The few-line API::

    import avdistill
    data = avdistill.load_dataset("av-digits")             # the embedded default dataset
    syn = avdistill.distill(data, method="dm", ipc=10)      # a SyntheticSet
    result = avdistill.evaluate(syn, data, runs=3)          # mean ± std test accuracy
"""

__version__ = "0.1.0"

from avdistill.data import AVDataset, load_dataset  # noqa: E402
from avdistill.synthetic import SyntheticSet, load_synthetic  # noqa: E402
from avdistill.methods import distill  # noqa: E402
from avdistill.evaluation import evaluate  # noqa: E402

__all__ = ["AVDataset", "SyntheticSet", "load_dataset", "load_synthetic", "distill", "evaluate", "__version__"]
