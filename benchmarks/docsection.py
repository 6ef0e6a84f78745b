"""Several benchmark scripts write one Markdown file: each owns a marked section of it.

``write_section(path, "perf", text)`` replaces what lies between ``<!-- perf:begin -->`` and
``<!-- perf:end -->`` (appending the section if it is not there yet) and leaves the rest of the
file, which other scripts own, untouched. The file is replaced atomically.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from avdistill.files import atomic_path  # noqa: E402


def write_section(path: str | Path, name: str, text: str) -> None:
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    new = pattern.sub(lambda _: block, old, count=1) if pattern.search(old) else (old.rstrip() + "\n\n" + block).lstrip()
    with atomic_path(path) as tmp:
        tmp.write_text(new.rstrip("\n") + "\n")  # one final newline, however often the section is rewritten


def shown_arguments() -> str:
    """This run's command-line arguments without where its outputs went."""
    shown, skip = [], False
    for a in sys.argv[1:]:
        if skip or a in ("--doc", "--json"):
            skip = not skip
            continue
        shown.append(a)
    return " ".join(shown)
