"""User-facing errors: the CLIs print these as one line on stderr and exit non-zero."""


class UserError(Exception):
    """Bad input from the user (unknown env/agent, bad config, missing or corrupt file)."""
