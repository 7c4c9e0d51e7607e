"""Settings read from environment variables.

Each is read by the command that uses it, when it runs (never while the command line is parsed), so a
malformed ``IDRES_WEB_PORT`` stops ``idres worker`` with one line and leaves ``idres lookup`` alone. An
unset or blank variable means the default; a malformed one is a ConfigError naming the variable, its
value and what is expected::

    idres: error: IDRES_WEB_PORT='abc': expected a port number 1-65535
"""

from __future__ import annotations

import math
import os
import re
from typing import Mapping, Optional, Sequence

from resolver.errors import ConfigError

_WHOLE = re.compile(r"[+-]?[0-9]+")
MAX_SECONDS = 1e9  # the longest wait a setting in seconds may ask for (about 31 years: "never", as tests set it)


def _raw(name: str, environ: Optional[Mapping[str, str]]) -> Optional[str]:
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    return raw or None


def env_error(name: str, raw: str, expected: str) -> ConfigError:
    return ConfigError(f"{name}={raw!r}: expected {expected}")


def env_int(name: str, default: int, *, minimum: Optional[int] = None, maximum: Optional[int] = None,
            expected: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    """``$name`` as a whole number within ``minimum``..``maximum``, or ``default`` when it is unset."""
    raw = _raw(name, environ)
    if raw is None:
        return default
    if expected is None:
        expected = "a whole number"
        if minimum is not None and maximum is not None:
            expected += f" {minimum}-{maximum}"
        elif minimum is not None:
            expected += f" >= {minimum}"
        elif maximum is not None:
            expected += f" <= {maximum}"
    value = int(raw) if _WHOLE.fullmatch(raw) else None
    if value is None or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise env_error(name, raw, expected)
    return value


def env_float(name: str, default: float, *, minimum: Optional[float] = None, positive: bool = False,
              maximum: Optional[float] = None, expected: Optional[str] = None,
              environ: Optional[Mapping[str, str]] = None) -> float:
    """``$name`` as a finite number (above 0 with ``positive``, at least ``minimum``, at most ``maximum``), or
    ``default``."""
    raw = _raw(name, environ)
    if raw is None:
        return default
    if expected is None:
        expected = "a number" + (" > 0" if positive else f" >= {minimum:g}" if minimum is not None else "") + \
            (f" and <= {maximum:g}" if maximum is not None else "")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (positive and value <= 0) or (minimum is not None and value < minimum) or \
            (maximum is not None and value > maximum):
        raise env_error(name, raw, expected)
    return value


def env_seconds(name: str, default: float, *, positive: bool = True,
                environ: Optional[Mapping[str, str]] = None) -> float:
    """``$name`` as a number of seconds (above 0, or at least 0 without ``positive``) up to ``MAX_SECONDS``: past
    about 9e9 s the timers of threads and asyncio fail inside (an overflow), so a longer one is refused here."""
    return env_float(name, default, positive=positive, minimum=None if positive else 0.0, maximum=MAX_SECONDS,
                     expected=f"a number of seconds {'>' if positive else '>='} 0 and <= {MAX_SECONDS:.0f}",
                     environ=environ)


def env_choice(name: str, default: str, choices: Sequence[str], *,
               environ: Optional[Mapping[str, str]] = None) -> str:
    """``$name`` (compared in lower case) if it is one of ``choices``, or ``default`` when it is unset."""
    raw = _raw(name, environ)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise env_error(name, raw, "one of " + ", ".join(choices))
    return raw.lower()

