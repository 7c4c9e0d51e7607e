"""Probabilistic matching on personal attributes: blocking, field comparisons, Fellegi-Sunter weights.

Deterministic identifiers (emails, phones, loyalty cards) leave some events unlinked: a caller who gives
only a name, a date of birth and an unknown phone; a store purchase with a name and a postcode. This
module scores how likely two attribute records describe the same person. It is pure and deterministic:
no clock, no unseeded randomness, no iteration over unordered sets whose order reaches a result, no
files (a model is read and written by ``streams.settings``).

The pieces:

* ``AttributeRecord``: first name, last name, date of birth (ISO), address, postcode, city, each
  canonicalized for matching on construction (accents folded, case folded, street abbreviations).
* ``blocking_keys(record)``: the sorted keys under which a record is indexed, so that candidates are found
  by key look-up instead of a scan: pairs of fields (surname Soundex, first-name nickname group, date of
  birth, postcode, city, address), so a typo or a gap in one field leaves others to find the record by.
  Dates in keys ignore a day/month swap.
* ``compare(a, b)``: one agreement level per field (``FIELD_LEVELS``, best first), or ``"null"`` when a
  side is missing.
* ``MatchModel``: m = P(level | same person) and u = P(level | different people) per field and level;
  ``weight(a, b)`` is the Fellegi-Sunter total ``sum(log2(m/u))`` over non-null fields, with the per-field
  contributions that explain it. Two thresholds: ``link_threshold`` (link automatically) and
  ``review_threshold`` (a possible match for review). ``default_model()`` ships sensible values.
* ``estimate_u`` (u from seeded random pairs) and ``estimate_m_em`` (EM for m and the match proportion
  over candidate pairs, u fixed).
* ``hard_conflict(a, b)``: dates of birth that clearly differ. A fuzzy score never overrides it.

The modules, one stage each; each imports only those listed above it:

* ``canonical``: canonical forms of names, addresses, postcodes and dates; ``AttributeRecord``.
* ``names``: the nickname groups and their data digest (``NICKNAMES_DIGEST``); Soundex.
* ``blocking``: ``blocking_keys``, ``BLOCKING_RULES`` and ``candidate_pairs_by_rule``.
* ``comparisons``: the fields, their agreement levels and ``compare``.
* ``compatibility``: ``hard_conflict``, ``first_names_compatible``, ``dates_compatible``.
* ``model``: ``MatchModel`` (m/u, weights, thresholds, scoring, model files) and ``default_model``.
* ``frequency``: the term-frequency adjustment of exact agreements.
* ``sampling``: the seeded random pairs u is estimated from.
* ``estimation``: ``estimate_u`` and ``estimate_m_em`` (EM).
* ``training``: ``distinct_records`` and ``train_model`` (what ``idres train`` runs).

This package re-exports every public name of its modules: import from ``resolver.matching``.
"""

from __future__ import annotations

from resolver.matching.canonical import (
    RECORD_FIELDS, TITLES, AttributeRecord, canonical_address, canonical_date, canonical_first_name,
    canonical_name, canonical_postcode,
)
from resolver.matching.names import NICKNAME_GROUPS, NICKNAMES_DIGEST, nickname_equivalent, soundex
from resolver.matching.blocking import BLOCKING_RULES, blocking_keys, candidate_pairs_by_rule
from resolver.matching.comparisons import (
    COMPARISONS_VERSION, FIELD_INDEX, FIELD_LEVELS, FIELDS, JW_HIGH, JW_LOW, NULL, POSTCODE_PREFIX, TSR_HIGH,
    TSR_LOW, compare, compare_address, compare_city, compare_date_of_birth, compare_fields, compare_first_name,
    compare_last_name, compare_postcode,
)
from resolver.matching.compatibility import dates_compatible, first_names_compatible, hard_conflict
from resolver.matching.model import (
    DEFAULT_LINK_THRESHOLD, DEFAULT_PRIOR, DEFAULT_REVIEW_THRESHOLD, DEPENDENT_FIELDS, MODEL_FORMAT,
    MODEL_FORMAT_VERSION, POSTCODE_AGREES, MatchModel, Table, default_model,
)
from resolver.matching.frequency import (
    FREQUENCY_FIELDS, FREQUENCY_PSEUDO_RECORDS, MAX_FREQUENCY_ADJUSTMENT, frequency_adjustment, frequency_values,
)
from resolver.matching.estimation import estimate_m_em, estimate_u
from resolver.matching.training import distinct_records, train_model

__all__ = [
    # canonical
    "AttributeRecord", "RECORD_FIELDS", "TITLES", "canonical_address", "canonical_date", "canonical_first_name",
    "canonical_name", "canonical_postcode",
    # names
    "NICKNAME_GROUPS", "NICKNAMES_DIGEST", "nickname_equivalent", "soundex",
    # blocking
    "BLOCKING_RULES", "blocking_keys", "candidate_pairs_by_rule",
    # comparisons
    "COMPARISONS_VERSION", "FIELD_INDEX", "FIELD_LEVELS", "FIELDS", "JW_HIGH", "JW_LOW", "NULL", "POSTCODE_PREFIX",
    "TSR_HIGH", "TSR_LOW", "compare", "compare_address", "compare_city", "compare_date_of_birth", "compare_fields",
    "compare_first_name", "compare_last_name", "compare_postcode",
    # compatibility
    "dates_compatible", "first_names_compatible", "hard_conflict",
    # model
    "DEFAULT_LINK_THRESHOLD", "DEFAULT_PRIOR", "DEFAULT_REVIEW_THRESHOLD", "DEPENDENT_FIELDS", "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION", "POSTCODE_AGREES", "MatchModel", "Table", "default_model",
    # frequency
    "FREQUENCY_FIELDS", "FREQUENCY_PSEUDO_RECORDS", "MAX_FREQUENCY_ADJUSTMENT", "frequency_adjustment",
    "frequency_values",
    # estimation
    "estimate_m_em", "estimate_u",
    # training
    "distinct_records", "train_model",
]
