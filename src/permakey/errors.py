"""The one exception type for expected user errors.

The command line prints a `UserError` as a single line (``permakey: error: ...``) and exits
with status 2, without a traceback. Library code raises it (or a subclass of ValueError where
the Python API expects one) for bad input: a missing file, a foreign dataset, a bad value.
"""


class UserError(Exception):
    """An expected error caused by the user's input; its message names the value or file."""
