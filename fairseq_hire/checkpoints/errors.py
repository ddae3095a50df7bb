"""What the safe checkpoint loader refuses, by reason."""
import pickle


class CheckpointError(Exception):
    """A checkpoint cannot be loaded; the message names the file and says why."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A checkpoint holds pickled objects outside fairseq's checkpoint contents."""


class UnsafeConfigError(CheckpointError, ValueError):
    """A checkpoint's configuration names something this plugin does not build."""


class CorruptCheckpointError(CheckpointError, ValueError):
    """The file is empty, truncated or not a PyTorch checkpoint at all."""


class HeadMismatchError(CheckpointError, ValueError):
    """A checkpoint's configuration builds classification heads its weights do not hold as built:
    predicting with it would use freshly initialised parameters."""


class MissingCheckpointError(CheckpointError, FileNotFoundError):
    """A checkpoint the user names is no file: missing, or a folder."""


class DataMismatchError(ValueError):
    """The binaries are not what the recipe or the checkpoint's head expects."""


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message."""
    first = next(iter(str(error).strip().splitlines()), "")
    return f"{type(error).__name__}: {first[:limit]}"
