"""Options several commands share."""

from __future__ import annotations

import argparse

import torch

from avdistill.data import load_dataset
from avdistill.errors import ConfigError
from avdistill.methods.budgets import BUDGET_NAMES, default_budget, describe_budget

DATA_HELP = ("dataset: 'av-digits' (embedded), 'av-digits-hard' (embedded, both modalities degraded: the "
             "development benchmark), a prepared .safetensors file (memory-mapped), or an AVDD .pt file "
             "(default: av-digits)")


def device_option(text: str) -> str:
    """argparse type of --device: a device torch knows and this machine has, checked before any work."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available here (torch {torch.__version__})")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return text


def load_data(source: str, verify: bool = True):
    """The dataset a command's ``--data`` names, prepared files memory-mapped (copy-on-write).

    Mapping costs nothing on a small file and never copies a large one: its pages are shared
    with the page cache (and between torchrun ranks), and only those a run touches are read.
    """
    return load_dataset(source, mmap=True, verify=verify)


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", choices=BUDGET_NAMES,
                        help="the method's iterations and batch sizes: 'paper' (the paper's values, hours on a CPU) "
                             "or 'cpu' (minutes); options given explicitly override it (default: paper on a GPU, "
                             "cpu otherwise)")


def resolve_budget(args, spec, announce: bool) -> str:
    """The budget the run uses (the one given, or the device's default), announced with what it sets."""
    budget = args.budget or default_budget(args.device)
    line = describe_budget(spec, budget, args.device, chosen=args.budget is not None)
    if line and announce:
        print(line, flush=True)
    return budget


def check_data_checksum(args, dataset) -> None:
    """A rerun from a run's synthetic.json (--config) must read the data that run read."""
    if args.config_checksum and dataset.checksum and args.config_checksum != dataset.checksum:
        raise ConfigError(f"{args.config}: that run read data with sha256 {args.config_checksum[:12]}..., but "
                          f"--data {args.data} has sha256 {dataset.checksum[:12]}...; it cannot be rerun exactly")


def add_verify_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip checking the input files' checksums and contents (one read of each file; "
                             "for large datasets already checked once)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives the same result on CPU (default: 0)")
    parser.add_argument("--device", default="cpu", type=device_option, help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


class OptionParser(argparse.ArgumentParser):
    """A parser whose errors (unknown or badly typed options) are a one-line ConfigError, not usage text."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message}")
