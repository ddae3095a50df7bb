"""The one exception glue_prep raises for bad input."""


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


class OutputExistsError(FileExistsError):
    """<out>/<TASK>-bin exists and --force was not given."""
