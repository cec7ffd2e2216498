"""Running an entry point so that a user's mistake reads as one sentence, not a traceback."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from hydra.errors import InstantiationException

from dastc.errors import DastcError


def find_user_error(err: BaseException) -> DastcError | None:
    """The DastcError behind ``err``, looking through the errors Hydra wraps around it; None when there is none."""
    while err is not None:  # Hydra wraps errors raised while instantiating; look through the chain
        if isinstance(err, DastcError):
            return err
        err = err.__cause__ or (err.__context__ if isinstance(err, InstantiationException) else None)
    return None


def _one_sentence(err: DastcError) -> str:
    """The error's own message; for one re-raised from a DataLoader worker, PyTorch prepends the worker's
    traceback, whose last line holds the original message."""
    message = str(err).strip()
    if "Original Traceback" in message:
        last = message.splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return message


@contextmanager
def user_errors():
    """Turn a DastcError (missing data, bad file, bad checkpoint) into ``error: ...`` and exit status 2."""
    try:
        yield
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        print(f"error: {_one_sentence(user_error)}", file=sys.stderr)
        raise SystemExit(2) from None
