"""The one exception for bad input: the CLI prints its message on one line and exits 2."""


class BadInput(Exception):
    """A file, folder, option or value the user gave is wrong; the message names it."""
