"""CPU and memory accounting of the benchmark's process trees (from /proc), and its ``Proc``: devtools'
launcher whose children also die with the harness (PR_SET_PDEATHSIG), so a harness killed outright does not
leave servers behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools import procs
from devtools.procs import tail

__all__ = ["Proc", "cpu_delta", "cpu_sample", "descendants", "host_cpu", "pss_mib", "tail"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class Proc(procs.Proc):
    """A bench server: its own session (Ctrl-C reaches only the harness) and PR_SET_PDEATHSIG (the harness
    runs everything from its main thread, so the kernel's per-thread parent tie is safe here)."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, **options: Any) -> None:
        super().__init__(name, argv, log, die_with_parent=True, **options)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it (scanned from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds (user + system, reaped children included) per pid of one process tree."""

    per_pid: dict[int, float]

    @property
    def total(self) -> float:
        return sum(self.per_pid.values())


def cpu_sample(root: int) -> CpuSample:
    """utime + stime + cutime + cstime of ``root`` and its live descendants. Summing the children's
    times as well keeps the total consistent when a child is reaped between two samples."""
    per_pid: dict[int, float] = {}
    for pid in descendants(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After the ')' split: index 11..14 = utime, stime, cutime, cstime (fields 14..17 of proc(5)).
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
        per_pid[pid] = ticks / _CLK_TCK
    return CpuSample(per_pid)


def cpu_delta(before: CpuSample, after: CpuSample) -> tuple[float, dict[int, float]]:
    """Total CPU seconds used between two samples, and the share of each pid still alive."""
    per_pid = {pid: after.per_pid[pid] - before.per_pid.get(pid, 0.0) for pid in after.per_pid}
    return max(0.0, after.total - before.total), per_pid


def host_cpu() -> dict[str, float]:
    """CPU seconds of the whole machine (all CPUs summed) from /proc/stat: ``task`` (user, nice, system:
    time charged to processes), ``irq`` (hard and soft interrupts, where loopback traffic is mostly
    handled), ``steal`` (taken by the hypervisor) and ``total``."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    parts += [0] * (8 - len(parts))
    user, nice, system, idle, iowait, irq, softirq, steal = parts[:8]
    return {
        "task": (user + nice + system) / _CLK_TCK,
        "irq": (irq + softirq) / _CLK_TCK,
        "steal": steal / _CLK_TCK,
        "total": (user + nice + system + idle + iowait + irq + softirq + steal) / _CLK_TCK,
    }


def pss_mib(root: int) -> float | None:
    """Proportional set size of ``root`` and its live descendants (MiB) from /proc/<pid>/smaps_rollup:
    shared pages count once across the tree, which RSS would count in every process."""
    total_kib, seen = 0, False
    for pid in descendants(root):
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total_kib += int(line.split()[1])
                seen = True
                break
    return round(total_kib / 1024, 1) if seen else None
