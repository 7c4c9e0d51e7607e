"""The heart of idres: pure, deterministic identity resolution.

``Resolver.decide(event)`` turns one raw channel event into decisions (domain events) and applies
them to its state; ``Resolver.apply`` folds decisions, so the state rebuilds from the decision log.
No I/O, no clock, no randomness.
"""

import sys

from resolver.config import IdentifierRule, ResolverConfig
from resolver.engine import Resolver, ResolverState

__all__ = ["IdentifierRule", "Resolver", "ResolverConfig", "ResolverState", "clear_caches"]


def clear_caches() -> None:
    """Empties the memoized functions of the resolver's modules (canonical names, comparisons, traits): they are
    pure, so only memory and time are at stake. What they hold is spread over the memory the state was made in,
    and kept apart from what is made next (a driver lets the state go, then folds the views)."""
    for name, module in list(sys.modules.items()):
        if name == "resolver" or name.startswith("resolver."):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()
