"""Write one benchmark's section of docs/BENCHMARKS.md, between its own markers.

Every bench script calls :func:`write_section` with the exact command that produced the
figures, so each number in the document can be traced to a command in the repository.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\nEvery figure here was written by a script in `bench/`; each section names the "
    "command that produced it and the machine it ran on. Ratios are measured side by side in one run.\n"
)


def machine() -> str:
    """A one-line description of the machine the benchmark ran on."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
            f"load average {load} when written (above {os.cpu_count()}: other work shared the cores)")


def write_section(key: str, title: str, body: str, command: str | None = None) -> Path:
    """Replace (or append) the section ``key`` of docs/BENCHMARKS.md."""
    command = command or "python " + " ".join(sys.argv)
    block = (
        f"<!-- {key}:start -->\n## {title}\n\nCommand: `{command}`  \n"
        f"Machine: {machine()}; run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n\n"
        f"{body.strip()}\n<!-- {key}:end -->\n"
    )
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->\n?", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    DOC.write_text(text)
    return DOC


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
