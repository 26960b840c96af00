"""What a benchmark run cost: CPU seconds of process trees and of the whole machine (Linux `/proc`)."""

import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds this machine's cores have spent busy since boot (`/proc/stat`, other work included)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / _TICKS


def _processes() -> dict[int, tuple[int, float]]:
    """Every live process: pid → (parent pid, CPU seconds of it and of its children it has reaped)."""
    found: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while we looked
            continue
        found[int(entry.name)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / _TICKS)
    return found


def tree_cpu_seconds(roots: Iterable[int | None]) -> float:
    """CPU seconds of these processes and all their descendants.

    Living descendants count themselves; ended ones (a render's ffmpeg, a PostgreSQL backend) count
    through their parent's `cutime`/`cstime` once reaped, so each CPU second is counted once.
    """
    processes = _processes()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _cpu) in processes.items():
        children[ppid].append(pid)
    total, stack, seen = 0.0, [pid for pid in roots if pid is not None], set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in processes:
            continue
        seen.add(pid)
        total += processes[pid][1]
        stack += children[pid]
    return total


@dataclass(frozen=True)
class CpuSample:
    """Wall-clock and CPU seconds, or the difference of two samples."""

    wall: float
    stack: float  # this process, the servers (PostgreSQL daemonises) and all their descendants
    temporal: float
    gpu_workers: float
    machine: float  # every process on the machine, other people's work included

    @classmethod
    def now(cls, server_pids: list[int | None], temporal_pid: int | None, gpu_pids: list[int | None]) -> "CpuSample":
        return cls(
            wall=time.perf_counter(),
            stack=tree_cpu_seconds([os.getpid(), *server_pids]),
            temporal=tree_cpu_seconds([temporal_pid]),
            gpu_workers=tree_cpu_seconds(gpu_pids),
            machine=machine_busy_seconds(),
        )

    def __sub__(self, other: "CpuSample") -> "CpuSample":
        return CpuSample(
            self.wall - other.wall,
            self.stack - other.stack,
            self.temporal - other.temporal,
            self.gpu_workers - other.gpu_workers,
            self.machine - other.machine,
        )
