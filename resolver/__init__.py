"""The heart of idres: pure, deterministic identity resolution.

``Resolver.decide(event)`` turns one raw channel event into decisions (domain events) and applies
them to its state; ``Resolver.apply`` folds decisions, so the state rebuilds from the decision log.
No I/O, no clock, no randomness.
"""

import sys

from schemas.lazy import lazy_names

__all__ = ["IdentifierRule", "Resolver", "ResolverConfig", "ResolverState", "clear_caches"]

# the façade's names are imported when first asked for (PEP 562): a command that needs only the errors, the
# formats or the log's readers does not pay for the whole engine's import (about 0.6 s of CPU)
_LAZY = {"IdentifierRule": "resolver.config", "ResolverConfig": "resolver.config", "Resolver": "resolver.engine",
         "ResolverState": "resolver.engine"}

__getattr__ = lazy_names("resolver", _LAZY, globals())


def clear_caches() -> None:
    """Empties the memoized functions of the resolver's modules (canonical names, comparisons, traits): they are
    pure, so only memory and time are at stake. What they hold is spread over the memory the state was made in,
    and kept apart from what is made next (a driver lets the state go, then folds the views)."""
    for name, module in list(sys.modules.items()):
        if name == "resolver" or name.startswith("resolver."):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()
