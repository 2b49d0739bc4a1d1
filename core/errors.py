"""User-facing errors: the CLIs print these as one line on stderr and exit non-zero."""

from __future__ import annotations

import reprlib
from typing import Any

QUOTE_LIMIT = 80  # characters of a user's value quoted in an error message


class UserError(Exception):
    """Bad input from the user (unknown env/agent, bad config, missing or corrupt file)."""


_repr = reprlib.Repr()  # builds at most a few dozen items of a huge value, never all of it
_repr.maxlevel, _repr.maxlist, _repr.maxtuple, _repr.maxdict = 3, 12, 12, 8
_repr.maxstring = _repr.maxother = _repr.maxlong = QUOTE_LIMIT


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` on one line, cut to `limit` characters with '...' where it was cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """repr(value) for an error message, at most `limit` characters however large the value."""
    return clip(_repr.repr(value), limit)
