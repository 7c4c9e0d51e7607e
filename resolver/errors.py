"""Errors the resolver raises; each carries one line a person can act on."""

import traceback
from typing import Optional


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


def without_tracebacks(exc: BaseException, handled: Optional[BaseException] = None) -> None:
    """Lets go of the frames an exception went through, and those of the exceptions it was raised from, up to
    ``handled`` (the exception the caller was handling when the call began, which is its caller's): their
    locals are cleared (those that have returned; ``traceback.clear_frames``) and the tracebacks dropped. An
    exception kept past its handler (in a local of a frame on its own traceback, or in a result that such a frame
    holds) forms a cycle with those frames, and a frame holds the frames that called it, each with its locals;
    only the cyclic garbage collector frees a cycle, and the engine pauses it while it builds its state
    (``streams.log.bulk_work``)."""
    pending, seen = [exc], {id(handled)} if handled is not None else set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        traceback.clear_frames(e.__traceback__)
        e.__traceback__ = None
        pending.extend((e.__context__, e.__cause__))
