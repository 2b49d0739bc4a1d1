"""A real Ctrl-C in the middle of training, for the tests of what a stop saves."""

from __future__ import annotations

import signal

import pytest


def ctrl_c_after(updates: int, update):
    """`update` that raises SIGINT as its `updates`-th call returns."""
    calls = []

    def wrapped(batch):
        calls.append(1)
        metrics = update(batch)
        if len(calls) == updates:
            signal.raise_signal(signal.SIGINT)
        return metrics

    return wrapped


def exit_code_of(train) -> int:
    """Run `train()` as a fresh `python train.py` would (SIGINT -> KeyboardInterrupt; train.py
    may install its own handler on top) and return the SystemExit code it ends with."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as exc:
            train()
    finally:
        signal.signal(signal.SIGINT, previous)
    return exc.value.code
