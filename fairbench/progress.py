"""Progress of long stages (training, tau search, sampling, measuring), on a terminal or in a log.

On a terminal a stage shows one live line (tqdm). Anywhere else (a CI log, ``nohup``, a pipe)
it writes a line to stderr each time it passes another tenth of its work, or when
`INTERVAL_S` seconds have passed since its last line, and when it ends; a stage that ends
within ``$FAIRBENCH_PROGRESS_AFTER_S`` seconds (default 2) writes nothing, so quick stages
do not flood the log::

    fairbench: sampling conditional: 400/1000 samples (40%), 12.1s elapsed, about 18.2s left

The estimate of what remains is ``elapsed * (total - done) / done`` (the mean rate so far);
work resumed from disk (``initial``) is left out of the rate.

A stage is a context manager; its `update` is the callback that the work calls::

    with progress(total=n, desc="sampling", unit="sample") as bar:
        sample(..., progress=bar.update)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from tqdm.auto import tqdm

INTERVAL_S = 30.0  # in a log, at most this long between two lines of a running stage
AFTER_ENV = "FAIRBENCH_PROGRESS_AFTER_S"
STEPS = 10  # in a log, one line per tenth of the work


def _format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _after_s() -> float:
    try:
        return float(os.environ.get(AFTER_ENV, "2"))
    except ValueError:
        return 2.0


class LogProgress:
    """Progress as plain lines on a stream that is not a terminal (see the module docstring)."""

    def __init__(self, total: int, desc: str, *, unit: str = "step", initial: int = 0, stream=None,
                 interval_s: float | None = None, after_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit = max(int(total), 0), desc, unit
        self.done = self.initial = int(initial)
        self._stream, self._clock = stream, clock
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self.after_s = _after_s() if after_s is None else after_s
        self.lines = 0
        self.start = self._last_time = clock()
        self._last_step = self._step(self.done)
        self._closed = False
        self.postfix = ""

    def _step(self, done: int) -> int:
        return STEPS * done // self.total if self.total else STEPS

    def line(self) -> str:
        elapsed = self._clock() - self.start
        text = f"fairbench: {self.desc}: {self.done}/{self.total} {self.unit}s"
        if self.total:
            text += f" ({100 * self.done // self.total}%)"
        text += f", {_format_seconds(elapsed)} elapsed"
        if self.postfix:
            text += f", {self.postfix}"
        worked = self.done - self.initial
        if self._closed or self.done >= self.total:
            return text + ", done"
        if worked > 0:
            text += f", about {_format_seconds(elapsed * (self.total - self.done) / worked)} left"
        return text

    def _emit(self) -> None:
        stream = self._stream or sys.stderr  # looked up now, so a redirected stderr is honoured
        print(self.line(), file=stream, flush=True)
        self.lines += 1
        self._last_time, self._last_step = self._clock(), self._step(self.done)

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + int(n), self.total) if self.total else self.done + int(n)
        if self.done >= self.total:
            return  # the closing line says it
        now = self._clock()
        if now - self.start < self.after_s:
            return
        if self._step(self.done) > self._last_step or now - self._last_time >= self.interval_s or not self.lines:
            self._emit()

    def set_postfix(self, **values) -> None:
        """Shown on the next line, e.g. ``loss=0.0123`` (tqdm's signature)."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.lines or self._clock() - self.start >= self.after_s:
                self._emit()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(total: int, desc: str, *, unit: str = "step", initial: int = 0):
    """A stage of `total` units: a live tqdm line on a terminal, `LogProgress` lines otherwise."""
    if _is_terminal(sys.stderr):
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False)
    return LogProgress(total, desc, unit=unit, initial=initial)
