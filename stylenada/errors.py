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


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), cut to ``limit``."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
