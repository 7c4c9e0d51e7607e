"""Errors the resolver raises; each carries one line a person can act on."""


class IdresError(Exception):
    """Base of every error idres reports as one line instead of a traceback."""


class ConfigError(IdresError):
    """The configuration is invalid."""


class ReviewError(IdresError):
    """A review verdict names a possible match that is unknown or already decided."""


class CommandError(IdresError):
    """A person's command (an unmerge, a lift) names something that is not there."""


class NothingToErase(CommandError):
    """An erasure names identifiers no customer holds."""
