"""Errors a user can act on: each message names the problem (key, id, file, value)."""


class ReverieError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(ReverieError):
    """A missing config file, an unknown key or a bad value."""


class InvalidInputError(ReverieError):
    """A vector, text or file that cannot be stored (wrong dimension, NaN, empty text...)."""


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


class InverterError(ReverieError):
    """A missing, corrupt or mismatched inverter model."""
