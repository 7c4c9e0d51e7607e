"""The state as parts keyed by name: what a shard owns, a slice built from parts, and what deciding changed.

The resolver's state numbers identifiers in the order it met them; parts name them by key instead, so they
can be owned by different shards and put together in any combination:

* ``NodePart``: all the state holds of one identifier (its profile, edges, traits, records, sessions, ...),
  its neighbours named by key;
* ``ProfilePart``: one profile (its identifiers by key);
* aliases (an absorbed or renamed profile's ID -> the ID it went to), blocks (blocking key -> the
  identifiers filed under it, in filing order) and value counts ((field, value) -> how many records hold
  it, and how many did at the start of the epoch);
* ``Shared``: what every event reads, whoever decides it: statistics over all events as they stood at the
  start of the epoch, the match model, the learned formats, the calibration counters, the bans.

``collect`` reads the parts a chain of events needs from a ``Source`` (the whole state, or the shards owning
them) into a ``Slice``: a ``ResolverState`` holding them (the *core*: identifiers with all their state; the
*edge*: identifiers the core points to, by key and profile only), on which the chain is decided as on the
whole state (``resolver.slices``). ``Slice.changes`` then gives what deciding
changed, as parts again: every core and new identifier, the profiles live now and the ones gone, aliases
set and removed, blocks, and the value counts and statistics as increments (other chains of the same
window add to the same counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterable, Optional, Protocol

from resolver.ids import node_type
from resolver.matching import AttributeRecord, MatchModel, frequency_values
from resolver.state import Profile, ResolverState, pickled_as_fields

Pair = tuple[str, str]  # two identifiers' keys, in key order


class ScopedNames(dict):
    """A slice's profiles or aliases: a dict that remembers the keys it was asked for and never held (``absent``:
    keys its owners were asked for when the slice was collected, and did not hold)."""

    __slots__ = ("asked", "held")

    def __init__(self, *args: Any, absent: Iterable[str] = ()) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()
        self.held: set[str] = set(self)
        self.held.update(absent)

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        if key not in self.held:
            self.asked.add(key)  # type: ignore[arg-type]
        return False

    def get(self, key: Any, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if key not in self.held:
            self.asked.add(key)
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        self.held.add(key)
        dict.__setitem__(self, key, value)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self.held.add(key)
        return dict.setdefault(self, key, default)

    def __reduce__(self) -> Any:  # (pickled as a plain dict: the record of questions stays local)
        return (dict, (dict(self),))


@dataclass(slots=True)
class NodePart:
    key: str
    profile: Optional[str] = None
    shared: bool = False
    adj: Optional[dict[str, str]] = None  # neighbour's key -> the event that linked them
    fuzzy: Optional[dict[str, str]] = None  # probable links, likewise
    traits: Optional[dict[str, int]] = None
    refused: Optional[set[str]] = None
    first: Optional[tuple[str, str, int]] = None
    records: Optional[list[AttributeRecord]] = None
    session_last: Optional[tuple[str, str]] = None
    session_pending: Optional[list[tuple[str, str]]] = None
    weak_anon: Optional[list[tuple[str, str]]] = None
    weak_uses: Optional[list[tuple[str, str]]] = None
    shared_users: Optional[list[str]] = None
    span: Optional[tuple[str, str]] = None
    phone_counted: bool = False
    ban_sides: Optional[dict[str, int]] = None
    reviews: Optional[dict[str, Pair]] = None  # pending reviews it is one side of: review ID -> the pair
    review_pairs: Optional[set[Pair]] = None  # pairs it is in that were queued for review or decided
    review_rejected: Optional[set[Pair]] = None  # ...that a person said are different customers


@dataclass(slots=True)
class ProfilePart:
    id: str
    created_at: str
    nodes: frozenset[str]
    counts: dict[str, int]
    traits: frozenset[str]
    first: Optional[tuple[str, str, int]] = None
    named: Optional[tuple[str, str, int]] = None
    # what footprints read of it: the customers who used its weak identifiers with anonymous events waiting
    # (``resolver.footprint.waiting_users``)
    waiting: tuple[str, ...] = ()


pickled_as_fields(NodePart)
pickled_as_fields(ProfilePart)


@dataclass(slots=True)
class Shared:
    """What deciding any event reads besides its footprint."""

    tf_epoch: int = -1
    value_totals: dict[str, int] = field(default_factory=dict)
    tf_totals_before: dict[str, int] = field(default_factory=dict)
    model: Optional[MatchModel] = None
    records_filed: int = 0
    next_calibration: int = 0
    phone_total: int = 0
    phone_regions: dict[str, int] = field(default_factory=dict)
    learned_regions: list[str] = field(default_factory=list)
    bans: dict[str, tuple[frozenset[str], frozenset[str], str]] = field(default_factory=dict)


@dataclass(slots=True)
class Changes:
    """What deciding on a slice changed, as parts."""

    nodes: list[NodePart]
    profiles: list[ProfilePart]
    gone_profiles: list[str]
    aliases: dict[str, str]
    gone_aliases: list[str]
    blocks: dict[str, list[str]]
    values: dict[tuple[str, str], int]  # increments
    totals: dict[str, int]  # increments of the records with a value for each field
    records_filed: int
    phone_total: int
    phone_regions: dict[str, int]  # increments

    def written(self) -> int:
        """How many parts it writes: identifiers, profiles, blocks and value counts."""
        return len(self.nodes) + len(self.profiles) + len(self.blocks) + len(self.values)

    def names(self) -> set[tuple[str, Any]]:
        """The names of what it writes, as an owner notes them (``PartStore.written``)."""
        out: set[tuple[str, Any]] = {("k", part.key) for part in self.nodes}
        out.update(("p", prof.id) for prof in self.profiles)
        out.update(("p", pid) for pid in self.gone_profiles)
        out.update(("a", name) for name in (*self.aliases, *self.gone_aliases))
        out.update(("b", key) for key in self.blocks)
        out.update(("v", key) for key in self.values)
        return out


@dataclass(slots=True)
class Patch:
    """Parts of a state as they now are, each replacing what its owner holds, and the names no longer held
    (``resolver.owner.patch_of``): what following a restatement sends (``PartStore.put``)."""

    nodes: list[NodePart] = field(default_factory=list)
    gone_nodes: list[str] = field(default_factory=list)
    profiles: list[ProfilePart] = field(default_factory=list)
    gone_profiles: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    gone_aliases: list[str] = field(default_factory=list)
    blocks: dict[str, list[str]] = field(default_factory=dict)
    gone_blocks: list[str] = field(default_factory=list)
    # (field, value) -> [records holding it, how many did at the start of epoch ``epoch``, ``epoch``]
    values: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    gone_values: list[tuple[str, str]] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)

    def written(self) -> int:
        """How many parts it writes: identifiers, profiles, blocks and value counts (as ``Changes.written``)."""
        return len(self.nodes) + len(self.profiles) + len(self.blocks) + len(self.values)


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


# what the state holds per identifier besides its edges, as (``ResolverState`` field, ``NodePart`` field, how
# a value is copied: None when it is not changed in place)
_PER_NODE: tuple[tuple[str, str, Any], ...] = (
    ("node_traits", "traits", dict), ("refused", "refused", set), ("node_first", "first", None),
    ("records", "records", list), ("session_last", "session_last", None), ("session_pending", "session_pending", list),
    ("weak_anon", "weak_anon", list), ("weak_uses", "weak_uses", list), ("shared_users", "shared_users", list),
    ("node_span", "span", None), ("ban_sides", "ban_sides", dict))


def node_part(st: ResolverState, n: int) -> NodePart:
    """Everything ``st`` holds of identifier ``n``."""
    keys = st.node_keys
    part = NodePart(keys[n], st.node_profile[n], n in st.shared, phone_counted=n in st.phone_counted)
    a = st.adj.get(n)
    if a is not None:
        part.adj = {keys[m]: ev for m, ev in a.items()}
    f = st.fuzzy.get(n)
    if f is not None:
        part.fuzzy = {keys[m]: ev for m, ev in f.items()}
    for field_, attr, copy in _PER_NODE:
        v = getattr(st, field_).get(n)
        if v is not None:
            setattr(part, attr, v if copy is None else copy(v))
    return part


def review_parts(st: ResolverState, nodes: set[int], parts: dict[int, NodePart]) -> None:
    """Puts the reviews of ``st`` that ``nodes`` are a side of into their ``parts``."""
    keys = st.node_keys
    for review, (a, b) in st.reviews.items():
        for n in (a, b):
            if n in nodes:
                p = parts[n]
                if p.reviews is None:
                    p.reviews = {}
                p.reviews[review] = (keys[a], keys[b])
    for source, attr in ((st.review_pairs, "review_pairs"), (st.review_rejected, "review_rejected")):
        for a, b in source:
            for n in (a, b):
                if n in nodes:
                    p = parts[n]
                    held = getattr(p, attr)
                    if held is None:
                        held = set()
                        setattr(p, attr, held)
                    held.add(_pair(keys[a], keys[b]))


def profile_part(st: ResolverState, prof: Profile) -> ProfilePart:
    keys = st.node_keys
    from resolver.footprint import waiting_users

    return ProfilePart(prof.id, prof.created_at, frozenset(keys[n] for n in prof.nodes), dict(prof.counts),
                       frozenset(prof.traits), prof.first, prof.named, tuple(waiting_users(st, prof)))


def shared_of(st: ResolverState) -> Shared:
    """The statistics, model and bans of ``st``."""
    keys = st.node_keys
    return Shared(st.tf_epoch, dict(st.value_totals), dict(st.tf_totals_before), st.model, st.records_filed,
                  st.next_calibration, st.phone_total, dict(st.phone_regions), list(st.learned_regions),
                  {b: (frozenset(keys[n] for n in one), frozenset(keys[n] for n in two), by)
                   for b, (one, two, by) in st.bans.items()})


def neighbours_of(part: NodePart) -> Iterable[str]:
    """The identifiers ``part`` points to (what a slice holding it holds at least as an edge)."""
    if part.adj:
        yield from part.adj
    if part.fuzzy:
        yield from part.fuzzy
    for held in (part.review_pairs, part.review_rejected):
        if held:
            for a, b in held:
                yield a
                yield b
    if part.reviews:
        for a, b in part.reviews.values():
            yield a
            yield b


def wanted_values(parts: Iterable[NodePart]) -> set[tuple[str, str]]:
    """The ``(field, value)`` pairs of the records ``parts`` hold (whose counts deciding may read)."""
    return {pair for p in parts for rec in p.records or () for pair in frequency_values(rec)}


class Source(Protocol):
    """Where a slice's parts are read from: the whole state (``resolver.slices``), or the shards owning
    them (``streams.key_shards``)."""

    def node(self, key: str) -> Optional[NodePart]: ...  # (with its reviews)

    def profile(self, pid: str) -> Optional[ProfilePart]: ...

    def block(self, key: str) -> Optional[list[str]]: ...

    def alias(self, pid: str) -> Optional[str]: ...

    def value(self, key: tuple[str, str]) -> tuple[int, Optional[int]]: ...  # (count, count at the epoch's start)


# a question a slice or a footprint asks of the parts' owners: (what: "nodes", "profiles", "blocks", "aliases"
# or "values"; the identifier's key, profile ID, blocking key or (field, value))
Ask = tuple[str, Any]
# a reading in rounds: it yields the questions of a round, all at once, is sent their answers and yields the
# next round's (the questions of a round depend only on earlier answers), and returns what it read
Rounds = Generator[list[Ask], dict[Ask, Any], Any]


def answered(rounds: Rounds, answer: Callable[[Ask], Any]) -> Any:
    """What a reading in ``rounds`` returns, each question answered by ``answer`` when the reading looks its
    answer up (as a whole state in memory can: nothing waits for a round)."""
    return read_through(rounds, _OnDemand(answer))


def read_through(rounds: Rounds, got: Any) -> Any:
    """What a reading in ``rounds`` returns, every round sent the same ``got``, which answers each question as
    it is looked up (``got[ask]``)."""
    try:
        next(rounds)
        while True:
            rounds.send(got)
    except StopIteration as done:
        return done.value


class _OnDemand(dict):
    """Answers, each read when first looked up."""

    __slots__ = ("answer",)

    def __init__(self, answer: Callable[[Ask], Any]) -> None:
        super().__init__()
        self.answer = answer

    def __missing__(self, ask: Ask) -> Any:
        got = self[ask] = self.answer(ask)
        return got


def source_answers(source: Source) -> Callable[[Ask], Any]:
    """``answered``'s ``answer`` reading ``source``."""
    reads = {"nodes": source.node, "profiles": source.profile, "blocks": source.block, "aliases": source.alias,
             "values": source.value}
    return lambda ask: reads[ask[0]](ask[1])


def collect(source: Source, items: Iterable[str], values: Iterable[tuple[str, str]], shared: Shared,
            position: int) -> "Slice":
    """The slice deciding events with these footprint ``items`` and record ``values`` reads, read from
    ``source``: the identifiers the items name, those filed under their blocking keys, the profiles of all
    of them whole (every identifier of each), the identifiers those point to as the edge, the aliases of
    the profiles, and the counts of the values the events' and the identifiers' records hold."""
    return answered(collecting(items, values, shared, position), source_answers(source))


def collecting(items: Iterable[str], values: Iterable[tuple[str, str]], shared: Shared, position: int,
               build: Optional[Callable[..., Any]] = None) -> Rounds:
    """``collect`` as a reading in five rounds (``Rounds``): the items; what is filed under the blocking
    keys; the profiles of the identifiers; their other identifiers; then the edge, the aliases and the
    value counts. (What a round asks is asked together, of each owner in one message, by a transport.) An
    ``a:`` item names an alias to read with the items: a person's command may name a profile by an ID it was
    renamed from (``footprint.of_command``). An ``n:`` item names a profile ID the events may give a profile
    (``naming.names_of``), asked of its owner as a profile and as an alias: if neither is held, the slice knows
    it is free without asking again (``Slice.asked``); if either is, the slice does not hold it, and deciding
    asks as before.
    ``build``: what is made of the parts read (``Slice``'s arguments; by default the ``Slice``)."""
    items = list(items)
    got: dict[Ask, Any] = {}

    def ask(asks: list[Ask]) -> Any:  # (a round of the questions not answered yet; none if there are none)
        nonlocal got
        fresh = [a for a in asks if a not in got]
        if not fresh:
            return
        sent = yield fresh
        if not got:
            got = sent
        elif sent is not got:
            got.update(sent)

    def need(key: str) -> NodePart:
        found = got[("nodes", key)]
        assert found is not None, f"identifier {key} is named by the state but its owner does not hold it"
        return found

    split = [item.partition(":") for item in items]
    yield from ask([({"k": "nodes", "p": "profiles", "b": "blocks", "a": "aliases"}[kind], name)
                    for kind, _, name in split if kind in ("k", "p", "b", "a")] +
                   [(what, name) for kind, _, name in split if kind == "n" for what in ("profiles", "aliases")])
    yield from ask([("nodes", k) for kind, _, name in split if kind == "b" for k in got[("blocks", name)] or ()])
    core: dict[str, NodePart] = {}
    names: list[str] = []
    blocks: dict[str, list[str]] = {}
    for kind, _, name in split:
        if kind == "k":
            found = got[("nodes", name)]
            if found is not None:
                core[name] = found
        elif kind == "p":
            names.append(name)
        elif kind == "b":
            filed = got[("blocks", name)]
            if filed is not None:
                blocks[name] = filed
                for k in filed:
                    if k not in core:
                        core[k] = need(k)
    profiles: dict[str, ProfilePart] = {}
    for pid in names:
        prof = got[("profiles", pid)]
        if prof is not None:
            profiles[pid] = prof
    yield from ask([("profiles", p.profile) for p in core.values() if p.profile is not None])
    for found in list(core.values()):  # (a block's identifier brings its profile)
        pid = found.profile
        if pid is not None and pid not in profiles:
            prof = got[("profiles", pid)]
            assert prof is not None, f"identifier {found.key} names profile {pid}, which its owner does not hold"
            profiles[pid] = prof
    yield from ask([("nodes", k) for prof in profiles.values() for k in prof.nodes if k not in core])
    for prof in profiles.values():
        for k in prof.nodes:
            if k not in core:
                core[k] = need(k)
    pointed = [k for found in core.values() for k in neighbours_of(found)]
    bans = {ban for found in core.values() if found.ban_sides for ban in found.ban_sides}
    pointed += [k for ban in bans for side in shared.bans[ban][:2] for k in side]
    wanted = set(values) | wanted_values(core.values())
    yield from ask([("nodes", k) for k in pointed if k not in core] + [("aliases", pid) for pid in profiles] +
                   [("values", key) for key in wanted])
    edge: dict[str, Optional[str]] = {}
    for k in pointed:
        if k not in core and k not in edge:
            edge[k] = need(k).profile
    aliases = {}
    for pid in [*profiles, *(name for kind, _, name in split if kind == "a")]:
        target = got[("aliases", pid)]
        if target is not None:
            aliases[pid] = target
    # the names checked (``n:``) that no profile and no alias held when the slice was read
    absent = frozenset(name for kind, _, name in split if kind == "n"
                       and got[("profiles", name)] is None and got[("aliases", name)] is None)
    counts = {key: got[("values", key)] for key in wanted}
    return (build or Slice)(list(core.values()), edge, list(profiles.values()), aliases, blocks, counts, shared,
                            position, absent)


class Slice:
    """A ``ResolverState`` built from parts (``state``), and what deciding on it changed (``changes``)."""

    def __init__(self, core: Iterable[NodePart], edge: dict[str, Optional[str]], profiles: Iterable[ProfilePart],
                 aliases: dict[str, str], blocks: dict[str, list[str]],
                 values: dict[tuple[str, str], tuple[int, Optional[int]]], shared: Shared, position: int,
                 absent: Iterable[str] = ()):
        core = sorted(core, key=lambda p: p.key)
        profiles = list(profiles)
        # (what was given, to send back only what changed)
        self._given = core
        self._given_profiles = {p.id: p for p in profiles}
        self._given_blocks = blocks
        inside = {p.key for p in core}
        edge_keys = sorted(k for k in edge if k not in inside)
        st = self.state = ResolverState()
        keys = [p.key for p in core] + edge_keys
        st.node_keys = keys
        st.node_types = [node_type(k) for k in keys]
        st.node_index = index = {k: i for i, k in enumerate(keys)}
        st.node_profile = [p.profile for p in core] + [edge[k] for k in edge_keys]
        self.core = len(core)
        self.size = len(keys)
        per_node = [(getattr(st, field_), attr, copy) for field_, attr, copy in _PER_NODE]
        for i, p in enumerate(core):
            if p.shared:
                st.shared.add(i)
            if p.adj is not None:
                st.adj[i] = {index[k]: ev for k, ev in p.adj.items()}
            if p.fuzzy is not None:
                st.fuzzy[i] = {index[k]: ev for k, ev in p.fuzzy.items()}
            for field_, attr, copy in per_node:
                v = getattr(p, attr)
                if v is not None:
                    field_[i] = v if copy is None else copy(v)
            if p.phone_counted:
                st.phone_counted.add(i)
            if p.reviews:
                for review, (a, b) in p.reviews.items():
                    st.reviews[review] = (index[a], index[b])
            for held, into in ((p.review_pairs, st.review_pairs), (p.review_rejected, st.review_rejected)):
                if held:
                    for a, b in held:
                        x, y = index[a], index[b]
                        into.add((x, y) if x < y else (y, x))
        st.bans = {b: (frozenset(index[k] for k in one), frozenset(index[k] for k in two), by)
                   for b, (one, two, by) in shared.bans.items()
                   if all(k in index for k in one) and all(k in index for k in two)}
        st.blocks = {b: [index[k] for k in nodes] for b, nodes in blocks.items()}
        st.profiles = ScopedNames({p.id: Profile(p.id, p.created_at, {index[k] for k in p.nodes}, dict(p.counts),
                                                 set(p.traits), p.first, p.named) for p in profiles}, absent=absent)
        st.aliases = ScopedNames(aliases, absent=absent)
        self._names = (st.profiles, st.aliases)
        for key, (count, before) in values.items():
            if count:
                st.value_counts[key] = count
            if before is not None:
                st.tf_before[key] = before
        st.value_totals = dict(shared.value_totals)
        st.tf_totals_before = dict(shared.tf_totals_before)
        st.tf_epoch = shared.tf_epoch
        st.model = shared.model
        st.records_filed = shared.records_filed
        st.next_calibration = shared.next_calibration
        st.phone_total = shared.phone_total
        st.phone_regions = dict(shared.phone_regions)
        st.learned_regions = list(shared.learned_regions)
        st.events_before = position
        self._profiles = set(st.profiles)
        self._aliases = dict(aliases)
        self._values = {key: count for key, (count, _) in values.items()}
        self._totals = dict(shared.value_totals)
        self._filed = shared.records_filed
        self._phones = shared.phone_total
        self._regions = dict(shared.phone_regions)

    def asked(self) -> tuple[set[str], set[str]]:
        """Profile IDs and alias names deciding asked about that the slice did not hold."""
        return self._names[0].asked, self._names[1].asked

    def changes(self) -> Changes:
        """What deciding on the slice changed: the identifiers, profiles and blocks that differ from what it
        was given (and the new ones), the profiles and aliases gone, the counts' increments."""
        st = self.state
        mine = range(self.core) if len(st.node_keys) == self.size else \
            [*range(self.core), *range(self.size, len(st.node_keys))]
        parts = {n: node_part(st, n) for n in mine}
        review_parts(st, set(parts), parts)
        given = self._given
        nodes = [p for n, p in parts.items() if n >= self.core or p != given[n]]
        live = set(st.profiles)
        profiles = []
        for pid in sorted(live):
            prof = profile_part(st, st.profiles[pid])
            if prof != self._given_profiles.get(pid):
                profiles.append(prof)
        blocks = {}
        keys = st.node_keys
        for b, filed in st.blocks.items():
            now = [keys[n] for n in filed]
            if now != self._given_blocks.get(b):
                blocks[b] = now
        aliases = {a: t for a, t in st.aliases.items() if self._aliases.get(a) != t}
        gone_aliases = sorted((set(self._aliases) - set(st.aliases)) | (live - self._profiles))
        return Changes(nodes, profiles, sorted(self._profiles - live), aliases, gone_aliases, blocks,
                       _increments(st.value_counts, self._values), _increments(st.value_totals, self._totals),
                       st.records_filed - self._filed, st.phone_total - self._phones,
                       _increments(st.phone_regions, self._regions))


def _increments(now: dict[Any, int], was: dict[Any, int]) -> dict[Any, int]:
    """What each count of ``now`` gained since ``was`` (the counts that changed)."""
    out = {}
    for key, count in now.items():
        d = count - was.get(key, 0)
        if d:
            out[key] = d
    return out
