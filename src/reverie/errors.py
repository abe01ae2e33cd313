"""Errors a user can act on: each message names the problem (key, id, file, value)."""


class ReverieError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(ReverieError):
    """A missing config file, an unknown key or a bad value."""


class InvalidInputError(ReverieError):
    """A vector, text or file that cannot be stored (wrong dimension, NaN, empty text...)."""


class InvalidPayloadError(InvalidInputError):
    """A payload the store could not hold or read back (too deep, too large, NaN, not UTF-8)."""


class TooLargeError(InvalidInputError):
    """A body, batch, payload or text over its configured limit."""


class NotFoundError(ReverieError):
    """An unknown memory, run or merge id."""


class StorageError(ReverieError):
    """Storage that cannot be opened or used (locked, unreachable, mismatched)."""


class StorageUnreachableError(StorageError):
    """A Qdrant server that does not answer: worth retrying."""


class StorageFullError(StorageError):
    """The data directory's disk is nearly full: writes stop before the engine fails."""


class ConflictError(ReverieError):
    """A request the memory's state forbids now: writing over a merged point, or touching
    a merge another process is applying."""


class BusyError(ConflictError):
    """A consolidation, undo or maintenance is already running."""


class UnauthorizedError(ReverieError):
    """No API key, or the wrong one."""


class ModelError(ReverieError):
    """A model that cannot be loaded or does not fit the collection: the service's
    problem, not the request's."""


class EmbedderError(ModelError):
    """An embedder that cannot be loaded."""


class InverterError(ModelError):
    """A missing, corrupt or mismatched inverter model."""


def reason(exc: BaseException) -> str:
    """What went wrong, in one line: a ReverieError's own message, else the exception's type
    and message (a library's error, such as a model that fails to load, is named by its type)."""
    return str(exc) if isinstance(exc, ReverieError) else f"{type(exc).__name__}: {exc}"
