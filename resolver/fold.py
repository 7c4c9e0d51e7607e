"""The fold: ``apply(decision)`` is the only code that changes the resolver's state.

Deciding applies each decision as it emits it, and rebuilding is the fold over the decision log, so
the two give the same state.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from resolver import bans, epochs, formats, graph, naming, sessions
from resolver import traits as person
from resolver.config import ResolverConfig
from resolver.ids import ERASED
from resolver.matching import FREQUENCY_FIELDS, AttributeRecord, MatchModel
from resolver.records import RecordMaker
from resolver.state import MAX_BLOCK_NODES_PER_PROFILE, MAX_RECORDS_PER_NODE, MAX_SHARED_USERS, \
    MAX_TRAITS_PER_NODE, NO_TRAITS, Profile, ResolverState
from resolver.touch import Touched


def _add_traits(prof: Profile, traits: Iterable[str]) -> None:
    """Adds dates of birth and names to a profile's; the first ones give it a set of its own."""
    if prof.traits:
        prof.traits.update(traits)  # type: ignore[attr-defined]
    else:
        prof.traits = set(traits)


class Fold:
    def __init__(self, config: ResolverConfig, state: ResolverState, records: RecordMaker) -> None:
        self.config = config
        self.state = state
        self.records = records
        self.applied = 0  # calls that changed (or began to change) the state: a driver's test for "changed"
        self.touched: Optional[Touched] = None  # (noting what decisions touch: ``Resolver.track``)

    def apply(self, decision: dict[str, Any]) -> None:
        self.applied += 1
        if self.touched is not None:
            self.touched.around(self.state, decision, self._apply_one)
            return
        _APPLY[decision["type"]](self, decision)

    def _apply_one(self, decision: dict[str, Any]) -> None:
        _APPLY[decision["type"]](self, decision)

    def apply_all(self, decisions: Iterable[dict[str, Any]]) -> None:
        self.applied += 1
        if self.touched is not None:
            for d in decisions:
                self.touched.around(self.state, d, self._apply_one)
            return
        # (a class-level table: bound methods stored on the instance would make a reference cycle
        # that keeps a discarded state alive while the garbage collector is paused)
        for d in decisions:
            _APPLY[d["type"]](self, d)

    def enter(self, position: int) -> None:
        """The event at ``position`` (events decided before it) is next: at the start of a new epoch, term
        frequencies are read as they stand now (``resolver.epochs``)."""
        st = self.state
        start = epochs.epoch_of(position)
        if start != st.tf_epoch:
            st.tf_epoch = start
            st.tf_before.clear()
            st.tf_totals_before.clear()

    # ------------------------------------------------------------------------------ interactions
    def _interaction(self, d: dict[str, Any]) -> None:
        st = self.state
        if d["event_id"] not in st.seen_events:
            self.enter(st.position)
        st.seen_events[d["event_id"]] = d.get("digest", -1)
        nodes = d["nodes"]
        if nodes:
            first = st.node_first
            at, eid = d["occurred_at"], d["event_id"]
            not_here = d.get("refused", ())
            index = st.node_index
            node_profile, profiles = st.node_profile, st.profiles
            for rank, key in enumerate(sorted(nodes) if len(nodes) > 1 else nodes):
                if key in not_here:
                    continue
                idx = index[key]
                f = first.get(idx)
                if f is not None and at > f[0]:
                    continue  # (most events: not the earliest use)
                if f is None or (at, eid, rank) < f:
                    f = first[idx] = (at, eid, rank)
                    pid = node_profile[idx]
                    if pid is not None:
                        prof = profiles[pid]
                        if prof.first is None or f < prof.first:
                            prof.first = f
        anchor = graph.representative(st, nodes, d.get("refused", ())) if nodes else None
        shared = graph.shared_of(st, nodes)
        if shared:
            if anchor is not None:
                sessions.fold_identified(st.session_last, shared, d["occurred_at"], st.node_keys[anchor])
                for s in shared:
                    users = st.shared_users.setdefault(s, [])
                    if len(users) < MAX_SHARED_USERS and st.node_keys[anchor] not in users:
                        users.append(st.node_keys[anchor])
            elif "attributed" not in d and self.config.by_session(d["channel"]):
                sessions.fold_waiting(st.session_pending, shared, st.node_keys, d["occurred_at"], d["event_id"])
        if anchor is not None:
            self._weak_use(d, anchor)
        rule = self.config.rule
        for key in nodes:
            idx = st.node_index[key]
            kind = rule(st.node_types[idx])
            if kind.kind == "phone" and not key.partition(":")[2].startswith(ERASED):
                formats.fold_number(st, idx, key.partition(":")[2])
            if kind.successive:
                at = d["occurred_at"]
                span = st.node_span.get(idx)
                if span is None:
                    st.node_span[idx] = (at, at)
                elif at < span[0] or at > span[1]:
                    st.node_span[idx] = (min(at, span[0]), max(at, span[1]))
        attributes = d.get("attributes")
        if not attributes:
            return
        hearsay = self.config.hearsay(d["channel"], d["event_type"], attributes)
        traits = person.event_traits(attributes, self.config.dob_conflict, self.config.name_conflict, hearsay)
        refused = d.get("refused", ())
        if traits:
            for key in d["nodes"]:
                idx = st.node(key)
                if idx in st.shared or key in refused:
                    continue
                known = st.node_traits.setdefault(idx, {})
                for t in traits:
                    n = known.get(t)
                    if n is not None:
                        known[t] = n + 1
                    elif len(known) < MAX_TRAITS_PER_NODE:
                        known[t] = 1
                        pid = st.node_profile[idx]
                        if pid is not None:
                            _add_traits(st.profiles[pid], (t,))
                    else:  # full: the event still names someone; credit the spelling of them held first
                        same = next((k for k in sorted(known) if all(person.compatible(t, k, w) for w in person.KINDS)),
                                    None)
                        if same is not None:
                            known[same] += 1
        if self.config.fuzzy_matching:
            record = self.records(attributes)
            if record is not None:
                rep = anchor  # (the node the record is filed under: the event's representative)
                if rep is not None and not (hearsay and traits and not person.names(
                        traits[0], st.profiles[st.node_profile[rep]].traits)):
                    self._index(rep, record[0], record[1])

    def _weak_use(self, d: dict[str, Any], anchor: int) -> None:
        """Remembers the event on its weak identifiers (``sessions.fold_weak``): an anonymous event when
        a weak identifier is the strongest it has, else an identified use of each weak one."""
        st = self.state
        types = st.node_types
        rule = self.config.rule
        if rule(types[anchor]).weak:
            # (an attributed one is a customer's already; one in person is nobody's by session)
            if "attributed" not in d and self.config.by_session(d["channel"]):
                sessions.fold_weak(st.weak_anon, anchor, d["occurred_at"], d["event_id"])
            return
        who = None
        for key in d["nodes"]:  # (a refused one too: another customer's use of it)
            idx = st.node_index[key]
            if idx != anchor and rule(types[idx]).weak and idx not in st.shared:
                if who is None:
                    who = st.node_keys[anchor]
                sessions.fold_weak(st.weak_uses, idx, d["occurred_at"], who)

    def _index(self, node: int, rec: AttributeRecord, keys: list[str]) -> None:
        """Files a record under ``node`` and its blocking keys (a full key takes no more nodes)."""
        st = self.state
        known = st.records.get(node)
        if known is None:
            st.records[node] = [rec]
        elif rec in known or len(known) >= MAX_RECORDS_PER_NODE:
            return
        else:
            known.append(rec)
        st.records_filed += 1
        if self.touched is not None:
            self.touched.filed(keys, [(f, v) for f in FREQUENCY_FIELDS if (v := getattr(rec, f)) is not None])
        counts, totals = st.value_counts, st.value_totals
        before, totals_before = st.tf_before, st.tf_totals_before
        for f in FREQUENCY_FIELDS:
            value = getattr(rec, f)
            if value is not None:
                key = (f, value)
                c = counts.get(key, 0)
                if key not in before:
                    before[key] = c
                counts[key] = c + 1
                t = totals.get(f, 0)
                if f not in totals_before:
                    totals_before[f] = t
                totals[f] = t + 1
        cap = self.config.max_block_size
        blocks = st.blocks
        pid = st.node_profile[node]
        node_profile = st.node_profile
        for key in keys:
            block = blocks.get(key)
            if block is None:
                blocks[key] = [node]
            elif len(block) < cap and node not in block:
                # a customer with many similar records would fill a block alone: a few of theirs suffice
                # to find them, the room is kept for other customers
                same = 0
                for n in block:
                    if node_profile[n] == pid:
                        same += 1
                if same < MAX_BLOCK_NODES_PER_PROFILE:
                    block.append(node)

    # ---------------------------------------------------------------------------------- profiles
    def _attach(self, prof: Profile, idx: int) -> None:
        st = self.state
        st.node_profile[idx] = prof.id
        prof.nodes.add(idx)
        f = st.node_first.get(idx)
        if f is not None and (prof.first is None or f < prof.first):
            prof.first = f
        t = st.node_types[idx]
        prof.counts[t] = prof.counts.get(t, 0) + 1
        known = st.node_traits.get(idx)
        if known:
            _add_traits(prof, known)

    def _created(self, d: dict[str, Any]) -> None:
        st = self.state
        prof = Profile(d["profile_id"], d["created_at"])
        st.profiles[prof.id] = prof
        st.aliases.pop(prof.id, None)  # (a name an absorbed profile left, taken back by a cluster of its own)
        for key in d["nodes"]:
            self._attach(prof, st.node(key))

    def _attached(self, d: dict[str, Any]) -> None:
        st = self.state
        prof = st.profiles[d["profile_id"]]
        for key in d["nodes"]:
            self._attach(prof, st.node(key))

    def _linked(self, d: dict[str, Any]) -> None:
        st = self.state
        idxs = [st.node(k) for k in d["nodes"]]
        ev = d["event_id"]
        for a in idxs:
            na = st.adj.get(a)
            if na is None:
                na = st.adj[a] = {}
            for b in idxs:
                if b != a and b not in na:
                    na[b] = ev

    def _merged(self, d: dict[str, Any]) -> None:
        st = self.state
        survivor = st.profiles[d["survivor_id"]]
        for pid in d["absorbed_ids"]:
            prof = st.profiles.pop(pid)
            for idx in prof.nodes:
                st.node_profile[idx] = survivor.id
            survivor.nodes |= prof.nodes
            for t, c in prof.counts.items():
                survivor.counts[t] = survivor.counts.get(t, 0) + c
            if prof.traits:
                _add_traits(survivor, prof.traits)
            if prof.first is not None and (survivor.first is None or prof.first < survivor.first):
                survivor.first = prof.first
            st.aliases[pid] = survivor.id

    def _flagged(self, d: dict[str, Any]) -> None:
        st = self.state
        idx = st.node(d["node"])
        st.shared.add(idx)
        st.refused.pop(idx, None)
        # who used it so far: the identifiers it was seen with (an event naming one of them may be theirs)
        st.shared_users[idx] = sorted(st.node_keys[m] for m in st.adj.get(idx, ()))[:MAX_SHARED_USERS]
        self._cut(idx)
        sessions.fold_flagged(st, idx)
        pid = st.node_profile[idx]
        if pid is not None:
            prof = st.profiles[pid]
            prof.nodes.discard(idx)
            t = st.node_types[idx]
            prof.counts[t] -= 1
            if not prof.counts[t]:
                del prof.counts[t]
            self._recount(prof)
            st.node_profile[idx] = None
            if prof.first is not None and st.node_first.get(idx) == prof.first:
                prof.first = naming.first_of(st, prof.nodes)

    def _cut(self, idx: int) -> None:
        """Removes every identifier edge and probable link of ``idx``."""
        st = self.state
        for edges in (st.adj, st.fuzzy):
            for m in edges.pop(idx, {}):
                nm = edges.get(m)
                if nm is not None:
                    nm.pop(idx, None)
                    if not nm:
                        del edges[m]

    def _recount(self, prof: Profile) -> None:
        st = self.state
        counts: dict[str, int] = {}
        known: set[str] = set()
        for idx in prof.nodes:
            t = st.node_types[idx]
            counts[t] = counts.get(t, 0) + 1
            nt = st.node_traits.get(idx)
            if nt:
                known.update(nt)
        prof.counts = counts
        prof.traits = known or NO_TRAITS

    def _split(self, d: dict[str, Any]) -> None:
        st = self.state
        for part in d["parts"]:
            pid = part["profile_id"]
            prof = st.profiles.get(pid)
            if prof is None:
                prof = st.profiles[pid] = Profile(pid, part["created_at"])
                st.aliases.pop(pid, None)
            prof.nodes = {st.node(k) for k in part["nodes"]}
            for idx in prof.nodes:
                st.node_profile[idx] = pid
            self._recount(prof)
            prof.first = naming.first_of(st, prof.nodes)

    def _renamed(self, d: dict[str, Any]) -> None:
        st = self.state
        old, new = d["profile_id"], d["new_profile_id"]
        prof = st.profiles.pop(old)
        prof.id = new
        prof.named = prof.first  # (a rename gives the name of the earliest event)
        st.profiles[new] = prof
        for idx in prof.nodes:
            st.node_profile[idx] = new
        st.aliases.pop(new, None)
        st.aliases[old] = new

    # ------------------------------------------------------------------------- links and reviews
    def _refused(self, d: dict[str, Any]) -> None:
        st = self.state
        st.refused.setdefault(st.node(d["node"]), set()).update(d["others"])

    def _probable(self, d: dict[str, Any]) -> None:
        st = self.state
        a, b = st.node(d["node"]), st.node(d["other"])
        st.fuzzy.setdefault(a, {})[b] = d["event_id"]
        st.fuzzy.setdefault(b, {})[a] = d["event_id"]
        if d["rule"] == "model_rescored":  # a possible match the re-estimated model links: no longer pending
            st.reviews.pop(d["review_id"], None)

    def _estimated(self, d: dict[str, Any]) -> None:
        st = self.state
        st.model = MatchModel.from_dict(d["model"], "model_estimated decision", check_comparisons=False)
        st.next_calibration = 2 * d["filed"]

    def _possible(self, d: dict[str, Any]) -> None:
        st = self.state
        a, b = st.node(d["node"]), st.node(d["other"])
        st.reviews[d["review_id"]] = (a, b)
        st.review_pairs.add((a, b) if a < b else (b, a))

    def _review(self, d: dict[str, Any]) -> None:
        st = self.state
        pair = st.reviews.pop(d["review_id"], None)
        if pair is not None and d["outcome"] == "rejected":
            a, b = pair
            st.review_rejected.add((a, b) if a < b else (b, a))
            bans.add(st, d["review_id"], (a,), (b,), d["reviewer"])  # (``resolver.bans``)

    def _banned(self, d: dict[str, Any]) -> None:
        st = self.state
        bans.add(st, d["ban_id"], [st.node(k) for k in d["nodes"]], [st.node(k) for k in d["others"]], d["by"])

    def _lifted(self, d: dict[str, Any]) -> None:
        st = self.state
        one, two, _ = st.bans[d["ban_id"]]
        if len(one) == len(two) == 1:  # a rejected review's pair: the matcher may link it again
            a, b = min(*one, *two), max(*one, *two)
            st.review_rejected.discard((a, b))
        bans.lift(st, d["ban_id"])

    def _attributed(self, d: dict[str, Any]) -> None:
        st = self.state
        sessions.fold_claimed(st.session_pending, st.node(d["via"]), d["events"])

    def _erased(self, d: dict[str, Any]) -> None:
        """The customer's identifiers leave every structure of the state; the profiles and their aliases go.
        (The events stay known by ID, so a re-delivered one changes nothing.)"""
        st = self.state
        gone: set[int] = set()
        for key in d["nodes"]:
            idx = st.node_index.pop(key, None)
            if idx is not None:
                gone.add(idx)
                st.node_keys[idx] = st.node_types[idx] + ":erased~"
        for idx in gone:
            self._cut(idx)
            for table in (st.node_traits, st.refused, st.records, st.node_first, st.node_span, st.weak_anon,
                          st.weak_uses, st.shared_users, st.session_last, st.session_pending):
                table.pop(idx, None)
            st.shared.discard(idx)
            st.phone_counted.discard(idx)
            for ban in list(st.ban_sides.pop(idx, {})):
                one, two, by = st.bans[ban]
                one, two = one - gone, two - gone
                if one and two:
                    st.bans[ban] = (one, two, by)
                else:
                    bans.lift(st, ban)
            pid = st.node_profile[idx]
            if pid is not None:
                st.profiles[pid].nodes.discard(idx)
                st.node_profile[idx] = None
        if gone:
            for key in [k for k, block in st.blocks.items() if any(n in gone for n in block)]:
                kept = [n for n in st.blocks[key] if n not in gone]
                if kept:
                    st.blocks[key] = kept
                else:
                    del st.blocks[key]
            for review, (a, b) in list(st.reviews.items()):
                if a in gone or b in gone:
                    del st.reviews[review]
            st.review_pairs = {p for p in st.review_pairs if p[0] not in gone and p[1] not in gone}
            st.review_rejected = {p for p in st.review_rejected if p[0] not in gone and p[1] not in gone}
        erased = {pid for pid in d["profile_ids"] if pid in st.profiles and not st.profiles[pid].nodes}
        for pid in erased:
            del st.profiles[pid]
        if erased:
            for alias in [a for a in st.aliases if st.resolve_alias(a) in erased]:
                del st.aliases[alias]

    def _rejected(self, d: dict[str, Any]) -> None:
        self.state.rejected_keys.add(d["key"])

    def _restate_part(self, d: dict[str, Any]) -> None:
        """A restatement's part (``resolver.restate``): profile IDs no longer live resolve to their identifiers'
        profile now. (Its markers change nothing: readers skip what they supersede.)"""
        st = self.state
        for old, new in d["aliases"]:
            if old not in st.profiles:
                st.aliases[old] = new

    def _marker(self, d: dict[str, Any]) -> None:
        pass

    def _learned(self, d: dict[str, Any]) -> None:
        self.state.learned_regions.append(d["region"])


_APPLY: dict[str, Callable[[Fold, dict[str, Any]], None]] = {
    "interaction_recorded": Fold._interaction,
    "profile_created": Fold._created,
    "identifiers_attached": Fold._attached,
    "identifiers_linked": Fold._linked,
    "profiles_merged": Fold._merged,
    "identifier_flagged": Fold._flagged,
    "profile_split": Fold._split,
    "profile_renamed": Fold._renamed,
    "event_rejected": Fold._rejected,
    "link_refused": Fold._refused,
    "probable_link": Fold._probable,
    "possible_match": Fold._possible,
    "review_decided": Fold._review,
    "connection_banned": Fold._banned,
    "ban_lifted": Fold._lifted,
    "events_attributed": Fold._attributed,
    "phone_region_learned": Fold._learned,
    "model_estimated": Fold._estimated,
    "customer_erased": Fold._erased,
    "log_restate_part": Fold._restate_part,
    "log_restated": Fold._marker,
    "log_restate_begun": Fold._marker,
    "log_restate_abandoned": Fold._marker,
}
