"""The exceptions glue_prep raises for bad input, and how its messages quote a file."""
import reprlib

SHOWN_CHARACTERS = 40  # the most of a value from a file that an error message quotes


class GlueFormatError(ValueError):
    """A GLUE file (or an argument naming one) is not what the task expects.

    The message names the file, the 1-based line number where that applies, and what was
    expected. The command line prints it without a traceback and exits with status 1.
    """

    def __init__(self, message, path=None, line=None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path + (f", line {line}" if line is not None else "") + ": "
        super().__init__(where + message)


class UnknownTaskError(ValueError):
    """A task name that is no GLUE task, no task file and no user task of the binaries given."""


class OutputExistsError(FileExistsError):
    """<out>/<TASK>-bin exists and --force was not given."""


class _Short(reprlib.Repr):
    """repr() of a value read from a file, kept to one short line whatever the file holds: the
    start of a long string and its length, a few items of a list, two levels of nesting."""

    def __init__(self):
        super().__init__()
        self.maxstring = self.maxother = SHOWN_CHARACTERS
        self.maxlevel = 2
        self.maxlist = self.maxtuple = self.maxdict = 4

    def repr_str(self, x, level):
        if len(x) <= self.maxstring:
            return repr(x)
        return f"{x[:self.maxstring]!r}... ({len(x)} characters)"


shown = _Short().repr


def listed(values, limit: int = 5, show=shown) -> str:
    """The first `limit` of `values`, each shown, and how many more there are."""
    values = list(values)
    text = ", ".join(show(x) for x in values[:limit])
    return text + (f" and {len(values) - limit} more" if len(values) > limit else "")


def unwritten(error: OSError) -> str:
    """An OSError of writing the output (e.g. a folder we may not write to), as one line:
    the writers build their output aside, so nothing was left behind."""
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}; nothing was written"
