"""Progress of a long step that would otherwise be silent for minutes (generating a dataset,
SPOT's VAE pretraining): a tqdm bar on a terminal; elsewhere (a log file, a pipe, a bench
job's output) a plain line each time another tenth is done or 30 s have passed since the
last line, whichever comes first, so a log shows the step is alive and how long it has left.

    with Progress(size, "hopper-random-v5", unit="transition") as progress:
        for ...:
            progress.update(1, note="...")   # note: shown after the counts, kept until replaced
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Counts up to `total`; `bar=None` draws a bar only when `stream` is a terminal."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "step",
        stream: TextIO | None = None,
        bar: bool | None = None,
        every_fraction: float = 0.1,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream if stream is not None else sys.stdout
        self.total, self.desc, self.unit = max(int(total), 0), desc, unit
        self.done, self.note = 0, ""
        self.every_s, self.clock = every_s, clock
        self.start = self.last_line = clock()
        self.stride = max(1, math.ceil(self.total * every_fraction))  # a line per stride done
        self.next_line = min(self.stride, self.total)
        if bar is None:
            bar = is_terminal(self.stream)
        self.bar = None
        if bar:
            self.bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream,
                            dynamic_ncols=True)  # fmt: skip

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        if self.bar is not None:
            if note is not None:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(n)
            return
        now = self.clock()
        if self.done >= self.next_line or now - self.last_line >= self.every_s:
            self.print_line(now)

    def print_line(self, now: float) -> None:
        elapsed = now - self.start
        percent = 100 * self.done / self.total if self.total else 100
        text = (f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}s ({percent:.0f}%), "
                f"{elapsed:.0f}s")  # fmt: skip
        if 0 < self.done < self.total:
            text += f", about {elapsed * (self.total - self.done) / self.done:.0f}s left"
        if self.note:
            text += f", {self.note}"
        print(text, file=self.stream, flush=True)
        self.last_line = now
        self.next_line = min((self.done // self.stride + 1) * self.stride, self.total)
        if self.done >= self.total:
            self.next_line = math.inf  # the 100% line is printed once

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
