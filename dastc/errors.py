"""Errors that the command-line entry points report as one clear sentence, without a traceback."""


class DastcError(Exception):
    """Base class: a problem the user can fix (missing data, bad file, bad config)."""


class DatasetNotFoundError(DastcError):
    """A dataset's directory is missing or incomplete."""


class DataFileError(DastcError):
    """A data file (frame, label, flow) is missing, unreadable or inconsistent."""


class CheckpointError(DastcError):
    """A checkpoint is missing or does not fit the requested run."""


class ConfigError(DastcError):
    """A config value is invalid or missing for what the command was asked to do."""
