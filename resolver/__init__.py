"""The heart of idres: pure, deterministic identity resolution.

``Resolver.decide(event)`` turns one raw channel event into decisions (domain events) and applies
them to its state; ``Resolver.apply`` folds decisions, so the state rebuilds from the decision log.
No I/O, no clock, no randomness.
"""

from resolver.config import IdentifierRule, ResolverConfig
from resolver.engine import Resolver, ResolverState

__all__ = ["IdentifierRule", "Resolver", "ResolverConfig", "ResolverState"]
