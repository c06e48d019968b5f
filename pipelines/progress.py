"""Progress of ``ds4h run`` that moves: which site and step runs, what it has done, for how long.

Dagster reports each step's start and its log lines to the ``ds4h_progress`` logger (defined here,
named in the run config by the runner); long steps add their own counts with :func:`report` ("notes
1,200 of 3,983"). :func:`run_display` shows them on the terminal as one live line with the step's
elapsed time, refreshed four times a second, or, without a terminal (CI, a log file), as one line
per step with its duration. Messages carry table and step names and counts, never a value.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import dagster as dg
from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

Listener = Callable[[str], None]

_lock = threading.Lock()
_listeners: list[Listener] = []


def peak_memory_mb() -> int:
    """The process's peak resident memory so far (MB): what a pod's memory limit must hold."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def with_memory(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` with the process's peak memory so far after each message (long steps' phases: an
    operator sizing a pod sees which phase needs what)."""
    return lambda message: log(f"{message} [peak memory {peak_memory_mb():,} MB]")


def report(message: str) -> None:
    """Tell whoever shows progress what a long step has done (no-op when nobody listens)."""
    with _lock:
        listeners = list(_listeners)
    for fn in listeners:
        fn("detail:" + message)


def counter(what: str, total: int, every: float = 1.0) -> Callable[[int], None]:
    """A callback for loops: ``tick(done)`` reports "<what> done of total" at most every ``every`` seconds."""
    last = [0.0]

    def tick(done: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every:
            last[0] = now
            report(f"{what} {done:,} of {total:,}")

    return tick


@contextmanager
def listening(fn: Listener) -> Iterator[None]:
    with _lock:
        _listeners.append(fn)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(fn)


class _StepHandler(logging.Handler):
    """Turns Dagster's step events into progress messages."""

    def emit(self, record: logging.LogRecord) -> None:
        meta: dict[str, Any] = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key")
        if not step:
            return
        if event is None:  # a step's own log line (context.log.info: counts and names, never values)
            if record.levelno >= logging.INFO and meta.get("orig_message"):
                report(str(meta["orig_message"]).splitlines()[0][:120])
            return
        kind = getattr(event, "event_type_value", "")
        if kind == "STEP_START":
            with _lock:
                listeners = list(_listeners)
            for fn in listeners:
                fn(f"step:{step}")


@dg.logger(config_schema=None, description="Forwards step starts to the terminal progress of 'ds4h run' (names only).")
def progress_logger(_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.getLogger("ds4h.progress")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    if not any(isinstance(h, _StepHandler) for h in log.handlers):
        log.addHandler(_StepHandler())
    return log


class _Line:
    """The live line: spinner, the current step, its own count, and elapsed times."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.step = "starting"
        self.context = ""
        self.step_start = self.start
        self.detail = ""
        self.spinner = Spinner("dots")

    def __rich__(self) -> RenderableType:
        now = time.monotonic()
        text = f"{self.step}" + (f" · {self.detail}" if self.detail else "")
        self.spinner.update(text=Text(f"{text}  [{now - self.step_start:.0f} s; total {now - self.start:.0f} s]"))
        return self.spinner


@contextmanager
def run_display(console: Console) -> Iterator[Listener]:
    """Show progress while the body runs; yields ``show(message)`` for the runner's own stage messages."""
    line = _Line()
    tty = console.is_terminal
    console, own = _uncaptured(console)
    lock = threading.Lock()

    def show(message: str) -> None:
        with lock:
            now = time.monotonic()
            if message.startswith("step:"):
                step, detail = f"{line.context}: {message[5:]}" if line.context else message[5:], ""
            elif message.startswith("detail:"):
                step, detail = line.step, message[7:]
            else:  # the runner's stage: "<site>: raw -> omop -> pseudo", "release over all sites -> publish"
                step, detail = message, ""
                line.context = message.split(":", 1)[0] if ": " in message else message.split(" ", 1)[0]
            if step != line.step:
                if not tty and line.step != "starting":
                    console.print(f"[{now - line.start:6.1f} s] {line.step} done in {now - line.step_start:.1f} s",
                                  highlight=False)
                line.step, line.step_start = step, now
            line.detail = detail

    try:
        with listening(show):
            if tty:
                with Live(line, console=console, refresh_per_second=4, transient=True):
                    yield show
            else:
                yield show
                console.print(f"[{time.monotonic() - line.start:6.1f} s] {line.step} done", highlight=False)
    finally:
        if own is not None:
            own.close()


def _uncaptured(console: Console) -> tuple[Console, IO[str] | None]:
    """A console on a duplicate of the terminal's file descriptor: Dagster captures the file
    descriptors 1 and 2 of a step into its compute logs while the step runs, which would freeze
    the line (and put progress into the logs). Streams without a descriptor are kept as they are."""
    if console.file not in (sys.__stdout__, sys.__stderr__):  # a test runner's stream (click's forwards fileno)
        return console, None
    try:
        fd = console.file.fileno()
    except (AttributeError, OSError, ValueError):
        return console, None
    own = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    return Console(file=own, force_terminal=console.is_terminal, width=console.width if console.is_terminal else None,
                   color_system="auto" if console.color_system else None, highlight=False), own
