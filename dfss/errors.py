"""The errors DFSS reports to users as one clear line (no traceback): bad data, bad settings, bad files.

Everything a user can fix by changing an input — a corrupt scan, a misspelt setting, a checkpoint
for another model, a full disk — raises a :class:`UserError` subclass whose message says what is
wrong and, where it can, what would be right. The command-line tools print that message and exit
with status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


class UserError(Exception):
    """A problem with the user's input, settings or machine, explained by its message."""


class ConfigError(UserError, ValueError):
    """A setting that cannot work (out of range, inconsistent with another, unknown name)."""


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of the :class:`UserError` behind ``error``, or None for a bug.

    Looks through Hydra's ``InstantiationException`` (and any ``raise ... from``) to the cause, and
    through a DataLoader worker's re-raised copy to the original message.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, UserError):
            message = str(seen)
            if "Original Traceback" in message:  # re-raised from a DataLoader worker
                last = message.rstrip().splitlines()[-1]
                message = last.split(": ", 1)[1] if ": " in last else last
            return f"{type(seen).__name__}: {message}"
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a :class:`UserError` into its message on stderr and exit status 2 (no traceback)."""
    try:
        yield
    except Exception as error:
        message = user_error_message(error)
        if message is None:
            raise
        consoles = [
            h
            for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        ]
        logging.getLogger("dfss").error(message)  # Hydra's console and the run's log file
        if not consoles:
            print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
