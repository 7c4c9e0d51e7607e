"""What applying decisions touched: the parts of the state (``resolver.partition``) they may have changed.

A ``Touched`` given to the fold (``Resolver.track``) notes, for every decision applied, the identifiers, profiles,
aliases, blocking keys and attribute values it may change, read before and after it is applied: the identifiers
it names and the profiles they belong to; the profiles and alias names it names, and for a decision that moves
identifiers between profiles (a merge, a split, a rename, a new profile, identifiers attached) every identifier
of those profiles; the neighbours of an identifier flagged shared (its edges go both ways); a review's or a ban's
two sides; and the blocking keys and values a record is filed under (noted by the fold as it files it). Every part
that differs before and after a decision is among them (a property test holds it to that, decision by decision,
on corpora where every guard acts).

The key shards use it to follow a restatement (``streams.key_shards.LocalKeyShards.follow``): the parts the
decisions made again touched, with those the superseded decisions wrote, are all that can differ.
"""

from __future__ import annotations

from typing import Any, Iterable

from resolver.state import ResolverState

_NODE_FIELDS = ("node", "other", "via")
_NODES_FIELDS = ("nodes", "others")
_PROFILE_FIELDS = ("profile_id", "survivor_id", "new_profile_id")
# decisions that move identifiers between profiles: every identifier of the profiles they name is touched
_MOVING = frozenset(("profile_created", "identifiers_attached", "profiles_merged", "profile_split",
                     "profile_renamed", "customer_erased"))


class Touched:
    def __init__(self) -> None:
        self.nodes: set[int] = set()
        self.profiles: set[str] = set()
        self.blocks: set[str] = set()
        self.values: set[tuple[str, str]] = set()
        self.keys: set[str] = set()  # (identifiers noted by key: those another state's decisions touched, ``add``)
        self.everything = False  # (an erasure: it reaches what no decision names; the caller starts anew)

    def add(self, other: "Touched", st: ResolverState) -> None:
        """Adds what ``other`` noted on the state ``st``, its identifiers by key (``st``'s: this one may note what
        decisions on another state touch, as a restatement's do after events decided on the state it replaces)."""
        self.keys.update(other.names(st)[0])
        self.profiles.update(other.profiles)
        self.blocks.update(other.blocks)
        self.values.update(other.values)
        self.everything = self.everything or other.everything

    def around(self, st: ResolverState, d: dict[str, Any], apply: Any) -> None:
        """Applies ``d`` (``apply(d)``), noting what it touches before and after."""
        self._note(st, d, True)
        apply(d)
        self._note(st, d, False)

    def filed(self, keys: Iterable[str], values: Iterable[tuple[str, str]]) -> None:
        """A record filed under blocking ``keys``, counted under ``values`` (the fold's ``_index``)."""
        self.blocks.update(keys)
        self.values.update(values)

    def names(self, st: ResolverState) -> tuple[set[str], set[str]]:
        """The identifiers (keys in ``st``) and the profile IDs and alias names touched."""
        keys = st.node_keys
        return {keys[n] for n in self.nodes} | self.keys, set(self.profiles)

    def _note(self, st: ResolverState, d: dict[str, Any], before: bool) -> None:
        t = d["type"]
        if t == "customer_erased":
            self.everything = True
        index = st.node_index
        named: list[int] = []
        for f in _NODE_FIELDS:
            v = d.get(f)
            if isinstance(v, str) and v in index:
                named.append(index[v])
        for f in _NODES_FIELDS:
            v = d.get(f)
            if isinstance(v, list):
                named.extend(index[k] for k in v if isinstance(k, str) and k in index)
        profiles: list[str] = []
        for part in d.get("parts", ()):
            named.extend(index[k] for k in part["nodes"] if k in index)
            profiles.append(part["profile_id"])
        for f in _PROFILE_FIELDS:
            v = d.get(f)
            if isinstance(v, str):
                profiles.append(v)
        profiles.extend(d.get("absorbed_ids", ()))
        for pair in d.get("aliases", ()):
            profiles.extend(pair)
        review = d.get("review_id")
        if review is not None and review in st.reviews:
            named.extend(st.reviews[review])
        ban = d.get("ban_id")
        if ban is not None and ban in st.bans:
            one, two, _ = st.bans[ban]
            named.extend(one)
            named.extend(two)
        if before and t == "identifier_flagged":  # (its edges and probable links go from both ends)
            for n in list(named):
                for edges in (st.adj, st.fuzzy):
                    named.extend(edges.get(n, ()))
        holder = st.node_profile
        self.nodes.update(named)
        self.profiles.update(profiles)
        self.profiles.update(pid for n in named if (pid := holder[n]) is not None)
        if t in _MOVING:
            for pid in profiles:
                prof = st.profiles.get(pid)
                if prof is not None:
                    self.nodes.update(prof.nodes)
