"""Where each process's CPU goes during the bench's window (``BENCH_PROFILE=1``).

py-spy samples every Python process of the stack (each gunicorn worker, each
Celery worker, the relay, beat, the webhook sink) from outside, without
changing it. ``--gil`` keeps only the thread holding the GIL, so a sample is
Python running on a core, not a thread waiting for Postgres or a socket: the
shares are of each process's Python CPU. ``--nonblocking`` never pauses the
process, so the figures of the same run are not disturbed (py-spy itself
costs a few percent of one core, which the run's CPU table shows as
``other``).

Each process's raw stacks go to BENCH_PROFILE_DIR (bench-profiles/ by default;
``py-spy``'s "collapsed" format, which flamegraph tools read), and the JSON gets,
per process group, the functions with the largest own and inclusive shares.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

TOP = 15
# A frame in nearly every sample (the interpreter's start, gunicorn's or
# Celery's loop) says nothing about where the time goes: left out of "inclusive".
EVERYWHERE = 0.9


def available() -> str | None:
    # The venv's own (make venv), whether or not the venv is on PATH.
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(groups: dict[str, list[int]], seconds: float, out_dir: Path) -> list:
    """Start one sampler per pid; [(group, pid, Popen, file)]."""
    exe = available()
    if exe is None:
        raise RuntimeError("BENCH_PROFILE=1 needs py-spy (make venv installs it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    running = []
    for group, pids in groups.items():
        for pid in pids:
            path = out_dir / f"{group}-{pid}.txt"
            argv = [exe, "record", "--nonblocking", "--gil", "-r", "50", "-d", str(int(seconds))]
            argv += ["-f", "raw", "-p", str(pid), "-o", str(path)]
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            running.append((group, pid, proc, path))
    return running


def finish(running: list, timeout: float = 60) -> dict:
    """Wait for the samplers; per group: samples, top own and inclusive frames (% of samples)."""
    stacks: dict[str, Counter] = {}
    for group, _pid, proc, path in running:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
        if path.exists():
            stacks.setdefault(group, Counter()).update(read_raw(path.read_text()))
    return {group: summarize(counts) for group, counts in sorted(stacks.items())}


def read_raw(text: str) -> Counter:
    """py-spy's raw output ("f (file:line);g (file:line) N" per line) -> Counter of stacks."""
    counts: Counter = Counter()
    for line in text.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if stack and n.isdigit():
            counts[tuple(_frame(f) for f in stack.split(";"))] += int(n)
    return counts


def summarize(counts: Counter) -> dict:
    total = sum(counts.values())
    own: Counter = Counter()
    inclusive: Counter = Counter()
    for frames, n in counts.items():
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    inclusive = Counter({k: v for k, v in inclusive.items() if v < EVERYWHERE * total})
    share = lambda c: {k: round(100 * v / total, 1) for k, v in c.most_common(TOP)}  # noqa: E731
    return {"samples": total, "own_pct": share(own), "inclusive_pct": share(inclusive)}


def _frame(raw: str) -> str:
    """'Connection.execute (sqlalchemy/engine/base.py:1418)' -> 'Connection.execute base.py'."""
    name, _, where = raw.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    return f"{name} {Path(path).name}" if path else name
