"""One base class for mistakes a user can make (bad file, bad argument, bad config).

The command line prints these as one line and exits with status 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: the message names the file, row or argument and what was expected."""


class ConfigError(UserError, ValueError):
    """An unknown config key, a value of the wrong type, or an inconsistent config."""
