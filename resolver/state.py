"""The resolver's state: the identity graph, profiles, aliases and the matching indexes.

Only the fold (``resolver.fold``) changes it; everything else reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import AbstractSet, Any, Optional

from resolver.ids import node_type
from resolver.matching import AttributeRecord, MatchModel

CALIBRATION_FIRST = 256  # attribute records filed before the first re-estimation of the match model

MAX_RECORDS_PER_NODE = 16
MAX_BLOCK_NODES_PER_PROFILE = 4
MAX_TRAITS_PER_NODE = 32  # dates of birth and names kept per identifier (the guards act long before)
# identifiers of customers kept per shared identifier: a family's members are fewer; an identifier with this
# many is a till, a kiosk or a placeholder, whose customers are not all remembered (``linking.attribute_by_name``)
MAX_SHARED_USERS = 16
NO_TRAITS: frozenset[str] = frozenset()


@dataclass(slots=True)
class Profile:
    id: str
    created_at: str
    nodes: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    # dates of birth and names seen on its identifiers (most profiles have none: they share one empty
    # frozenset, ``NO_TRAITS``, until the fold gives them a set of their own)
    traits: AbstractSet[str] = NO_TRAITS
    # the earliest first use among its identifiers (``resolver.naming``), and the one its ID was last
    # checked against
    first: Optional[tuple[str, str, int]] = None
    named: Optional[tuple[str, str, int]] = None


def pickled_as_fields(cls: type) -> type:
    """Pickles ``cls`` (a slots dataclass) as its fields in a tuple, given to its constructor when read back.
    The default builds a dict of the slots for each instance, in Python: twice as slow for a part crossing
    between shards, and kept alive, with everything else a checkpoint's pickler makes, until it is done (half
    a million profiles at the peak of an ingest's memory). Pickles of the default's form still read."""
    names = [f.name for f in fields(cls) if f.init]
    assert len(names) > 1 and len(names) == len(fields(cls)), f"{cls.__name__}: every field in the constructor"
    values = attrgetter(*names)

    def __reduce__(self: Any) -> Any:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls


pickled_as_fields(Profile)


class ResolverState:
    """Everything the resolver knows. Built only by the fold over decisions."""

    # large tables whose lists, dicts and tuples nothing else holds, nor two of their entries: a checkpoint writes
    # them apart, as equal copies (``streams.log.bulk_columns``). (Not ``records``: a record may be filed on two
    # identifiers.)
    CHECKPOINT_BULK = {name: "dict" for name in ("blocks", "weak_anon", "weak_uses", "node_first", "adj", "node_traits",
                                                  "node_span", "refused", "fuzzy")}

    def __init__(self) -> None:
        self.seen_events: dict[str, int] = {}  # event ID -> digest of its content (-1: not logged)
        # events decided before the ones in ``seen_events`` (a slice's: ``resolver.slices``; else 0)
        self.events_before = 0
        self.rejected_keys: set[str] = set()
        self.node_index: dict[str, int] = {}
        self.node_keys: list[str] = []
        self.node_types: list[str] = []
        self.node_profile: list[Optional[str]] = []
        self.shared: set[int] = set()
        self.adj: dict[int, dict[int, str]] = {}
        # dates of birth and names seen with the identifier, and on how many of its events
        self.node_traits: dict[int, dict[str, int]] = {}
        self.refused: dict[int, set[str]] = {}  # partners a weak identifier was seen with but not linked to
        self.profiles: dict[str, Profile] = {}
        self.aliases: dict[str, str] = {}
        # node -> (time, event ID, rank among the event's identifiers) of the earliest event that used it:
        # what a profile is named by (``resolver.naming``)
        self.node_first: dict[int, tuple[str, str, int]] = {}
        # probabilistic matching
        self.records: dict[int, list[AttributeRecord]] = {}  # node -> distinct attribute records seen on it
        self.blocks: dict[str, list[int]] = {}  # blocking key -> nodes holding a record with that key
        self.fuzzy: dict[int, dict[int, str]] = {}  # probable links: node -> {node: event_id}
        self.reviews: dict[str, tuple[int, int]] = {}  # pending review id -> (node, other node)
        self.review_pairs: set[tuple[int, int]] = set()  # pairs queued for review or decided by a person
        self.review_rejected: set[tuple[int, int]] = set()  # pairs a person said are different customers
        # connection bans (``resolver.bans``): ban ID -> (first side, second side, who decided it), and
        # identifier -> {ban ID: its side, 1 or 2}
        self.bans: dict[str, tuple[frozenset[int], frozenset[int], str]] = {}
        self.ban_sides: dict[int, dict[str, int]] = {}
        self.value_counts: dict[tuple[str, str], int] = {}  # (field, value) -> indexed records holding it
        self.value_totals: dict[str, int] = {}  # field -> indexed records with a value for it
        # the counts above as they stood at the start of the current epoch (``resolver.epochs``), for the
        # values and fields counted since: what deciding reads
        self.tf_epoch = -1
        self.tf_before: dict[tuple[str, str], int] = {}
        self.tf_totals_before: dict[str, int] = {}
        # self-calibration (``resolver.calibration``): the model estimated last, records filed so far, and
        # the count at which the model is next re-estimated
        self.model: Optional[MatchModel] = None
        self.records_filed = 0
        self.next_calibration = CALIBRATION_FIRST
        # anonymous activity on shared identifiers (``resolver.sessions``)
        self.session_last: dict[int, tuple[str, str]] = {}  # shared node -> (time, identifier) of its last identified use
        self.session_pending: dict[int, list[tuple[str, str]]] = {}  # shared node -> [(time, event)] unattributed
        # a weak identifier not (yet) shared: its latest anonymous events and identified uses, so that the
        # anonymous ones can be attributed by session if it is found shared
        self.weak_anon: dict[int, list[tuple[str, str]]] = {}  # node -> [(time, event)]
        self.weak_uses: dict[int, list[tuple[str, str]]] = {}  # node -> [(time, customer's identifier)]
        # shared node -> identifiers of the customers who used it (``linking.attribute_by_name``)
        self.shared_users: dict[int, list[str]] = {}
        # first and last use of identifiers of a ``successive`` type (loyalty cards)
        self.node_span: dict[int, tuple[str, str]] = {}
        # formats learned from the data (``resolver.formats``)
        self.phone_counted: set[int] = set()  # phone nodes counted
        self.phone_total = 0
        self.phone_regions: dict[str, int] = {}  # region -> distinct phone numbers of its country code
        self.learned_regions: list[str] = []  # in the order learned

    @property
    def position(self) -> int:
        """The events decided: those before ``seen_events`` (a slice's) and those in it."""
        return self.events_before + len(self.seen_events)

    def node(self, key: str) -> int:
        idx = self.node_index.get(key)
        if idx is None:
            idx = len(self.node_keys)
            self.node_index[key] = idx
            self.node_keys.append(key)
            self.node_types.append(node_type(key))
            self.node_profile.append(None)
        return idx

    def resolve_alias(self, profile_id: str) -> str:
        seen = 0
        while profile_id in self.aliases and seen < 1_000_000:
            profile_id = self.aliases[profile_id]
            seen += 1
        return profile_id
