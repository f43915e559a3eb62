"""The one error type for input tierwise cannot use, shared by every package.

The command line reports these on stderr with exit code 2; anything else escaping a command is a bug and
keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Something a user gave tierwise (a file, a flag, a request, a model) cannot be used as it is.

    The message names what is wrong and where (file, row, column, field), so it can be fixed.
    """
