"""Cooperative stopping: Ctrl-C and SIGTERM set a flag, and long loops ask for it.

A signal must not cut an update in half (the checkpoint would hold an agent that took an
update its counters never recorded), so while `handling()` is active the handlers only record
the signal. Every loop that can run for long (the training loop, each update of a large
update-to-data ratio, evaluation episodes, bias rollouts, dataset generation, VAE pretraining)
calls `check()` at a point where stopping leaves consistent state, and `check()` raises
KeyboardInterrupt once a stop was asked for. Outside `handling()` nothing is recorded and
`check()` never raises, so library code can call it freely.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requests: list[int] = []


def requested() -> bool:
    """Whether a stop was asked for since `handling()` began."""
    return bool(_requests)


def check() -> None:
    """Raise KeyboardInterrupt if a stop was asked for (call where stopping is safe)."""
    if _requests:
        raise KeyboardInterrupt


def _record(signum: int, frame) -> None:
    _requests.append(signum)
    if len(_requests) == 2:  # say once that the first one was heard
        print("stopping: finishing the current step and saving; please wait", file=sys.stderr,
              flush=True)  # fmt: skip


@contextmanager
def handling() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM only record a stop request (see the module doc);
    the previous handlers come back after it, and the request is forgotten."""
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _requests.clear()
    for sig in SIGNALS:
        signal.signal(sig, _record)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requests.clear()
