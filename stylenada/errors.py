"""User-facing errors: one clear line naming the problem and the fix."""


class StylenadaError(Exception):
    """An error caused by user input (a file, an option, a prompt).

    The command line prints ``str(err)`` alone, without a traceback, so the message must name both
    the problem and how to fix it.
    """


class CheckpointError(StylenadaError):
    """A checkpoint file is missing, corrupt, of an unknown format or of an unexpected architecture."""


class UnsafePickleError(CheckpointError):
    """A pickle asked to import or call something outside the allow-list."""
