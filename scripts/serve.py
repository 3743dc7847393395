"""Start every process of the Procfile, prefix their output, stop them all cleanly on Ctrl-C.

Why not honcho: it leaves children in the terminal's process group, so Ctrl-C also lands on each
qcluster's forked workers at once, which breaks django-q2's orderly shutdown and ends in SIGKILL
after 5 s. Here each process gets its own session; only this supervisor sees Ctrl-C and sends
one SIGTERM to each process, waiting up to GRACE seconds before SIGKILL.

Usage: python scripts/serve.py [Procfile]
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE = float(os.environ.get("SERVE_GRACE_SECONDS", "30"))
COLORS = ["36", "33", "32", "35", "34", "31"]


def read_procfile(path: Path) -> list[tuple[str, str]]:
    entries = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        entries.append((name.strip(), command.strip()))
    return entries


def main() -> int:
    procfile = Path(sys.argv[1] if len(sys.argv) > 1 else "Procfile")
    entries = read_procfile(procfile)
    width = max(len(name) for name, _ in entries)
    tty = sys.stdout.isatty()
    selector = selectors.DefaultSelector()
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def emit(name: str, index: int, text: str) -> None:
        label = f"{time.strftime('%H:%M:%S')} {name:<{width}} |"
        if tty:
            label = f"\033[{COLORS[index % len(COLORS)]}m{label}\033[0m"
        sys.stdout.write(f"{label} {text}\n")
        sys.stdout.flush()

    for index, (name, command) in enumerate(entries):
        # The Procfile is ours (not user input); sh only expands ${VAR:-default} and execs.
        proc = subprocess.Popen(  # noqa: S602
            f"exec {command}",
            shell=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs[name] = proc
        selector.register(proc.stdout, selectors.EVENT_READ, (name, index))  # type: ignore[arg-type]
        emit("system", 0, f"{name} started (pid {proc.pid})")

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        for name, proc in procs.items():
            if proc.poll() is None:
                emit("system", 0, f"stopping {name}")
                proc.terminate()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    deadline: float | None = None
    exit_code = 0
    while selector.get_map():
        for key, _ in selector.select(timeout=0.5):
            name, index = key.data
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if line:
                emit(name, index, line.decode(errors="replace").rstrip())
            else:
                selector.unregister(key.fileobj)
        for name, proc in procs.items():
            if proc.poll() is not None and not getattr(proc, "_reported", False):
                proc._reported = True  # type: ignore[attr-defined]
                emit("system", 0, f"{name} exited with code {proc.returncode}")
                if not stopping:
                    # One process dying takes the others down: a half-running service misleads.
                    exit_code = proc.returncode or 1
                    stop()
        if stopping:
            deadline = deadline or time.monotonic() + GRACE
            if time.monotonic() > deadline:
                for name, proc in procs.items():
                    if proc.poll() is None:
                        emit("system", 0, f"{name} did not stop in {GRACE:.0f}s; killing it")
                        proc.kill()
                deadline = float("inf")
    for proc in procs.values():
        proc.wait()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
