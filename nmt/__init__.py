"""nmt: attention RNN neural machine translation."""

__version__ = "0.1.0"


class NmtError(Exception):
    """An error caused by the user's input (files, options, checkpoints).

    The CLI prints its message as one line on stderr and exits with code 2.
    """
