"""Options several commands share."""

from __future__ import annotations

import argparse

from avdistill.errors import ConfigError

DATA_HELP = "dataset: 'av-digits' (embedded), a prepared .safetensors file, or an AVDD .pt file (default: av-digits)"


def add_verify_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip checking the input files' checksums and contents (one read of each file; "
                             "for large datasets already checked once)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives the same result on CPU (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


class OptionParser(argparse.ArgumentParser):
    """A parser whose errors (unknown or badly typed options) are a one-line ConfigError, not usage text."""

    def error(self, message: str):
        raise ConfigError(f"{self.prog}: {message}")
