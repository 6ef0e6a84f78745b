"""File writing that never leaves half-written outputs, and provenance for every output."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy
import torch

from avdistill.errors import ConfigError
from avdistill.version import __version__


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    Readers see either the old file or the complete new one, never a partial write. The data
    is flushed to disk (fsync) before the rename and the rename after it, so a power loss
    cannot leave the new name pointing at unwritten blocks.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        _fsync(tmp)
        os.replace(tmp, path)
        if os.name == "posix":  # the rename itself lives in the folder's entry
            _fsync(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """`path` as an output folder: a ConfigError before any work if something other than a folder is there."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} exists and is not a folder")
    return path


def check_output_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """`path` as an output file: a ConfigError before any work if a folder is in its place."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file path")
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"{option} {path}: {path.parent} is not a folder")
    return path


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a folder; the data itself was synced
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def user_cache_dir(name: str) -> Path:
    """Where trained networks that later runs reuse are cached: $XDG_CACHE_HOME/avdistill/<name>
    (~/.cache/avdistill/<name> when XDG_CACHE_HOME is unset or empty, as the XDG spec says)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avdistill" / name


def write_json(path: str | os.PathLike, obj) -> None:
    """Atomically write `obj` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def source_commit() -> str:
    """The git commit of the checkout avdistill runs from, '+changes' when its tree differs from it;
    'unknown' outside a git checkout (an installed wheel, even inside another repository's folder)."""
    here = Path(__file__).resolve().parent
    try:
        subprocess.run(["git", "-C", str(here), "ls-files", "--error-unmatch", Path(__file__).name],
                       capture_output=True, timeout=10, check=True)  # this file is tracked: a checkout of avdistill
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


def versions() -> dict[str, str]:
    """Versions of the software that produced an output, recorded in its metadata."""
    return {
        "avdistill": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
