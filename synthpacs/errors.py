"""Exceptions that carry a user-facing message. Front ends map them to
HTTP 4xx JSON bodies, DIMSE failure statuses or a one-line CLI error."""


class SynthPACSError(Exception):
    """Base class: the message is meant for the user, never a traceback."""


class ConfigError(SynthPACSError):
    """A setting is unknown or invalid; the message names the key and its source."""


class StartupError(SynthPACSError):
    """The server cannot start (port in use, unreadable data directory...)."""


class InvalidQuery(SynthPACSError):
    """A query key or value is malformed; the message names it."""


class NotFound(SynthPACSError):
    """No such patient, study, series or instance."""


class StoreRefused(SynthPACSError):
    """An object offered for storage was refused; nothing was written."""
