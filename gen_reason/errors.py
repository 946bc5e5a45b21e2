"""The one exception type that means "the user asked for something wrong".

The CLI turns a :class:`UserError` into one line on stderr and exit code 2; any other
exception is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in what the user asked for (unknown name, bad value, missing file)."""
