"""One base class for mistakes a user can make (bad file, bad argument, bad config).

The command line prints these as one line and exits with status 2; anything else is a bug
and keeps its traceback. Input that can be used but not as given (a few bad joints, a huge photo) is an
`InputWarning`, which the command line prints as one line (`pcdms <command>: warning: ...`) and goes on.
"""

import warnings


class UserError(Exception):
    """A problem with the user's input: the message names the file, row or argument and what was expected."""


class ConfigError(UserError, ValueError):
    """An unknown config key, a value of the wrong type, or an inconsistent config."""


class InputWarning(UserWarning):
    """Input used with a correction the user should know about; the message names the file or argument."""


def warn(message: str) -> None:
    """Issue an `InputWarning` (the CLI prints it as one line; library users can filter or record it)."""
    warnings.warn(message, InputWarning, stacklevel=2)
