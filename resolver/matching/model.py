"""The Fellegi-Sunter model: m and u per field and level, weights, thresholds, scoring, model files.

``MatchModel``: m = P(level | same person) and u = P(level | different people) per field and level;
``weight(a, b)`` is the Fellegi-Sunter total ``sum(log2(m/u))`` over non-null fields, with the per-field
contributions that explain it. Two thresholds: ``link_threshold`` (link automatically) and
``review_threshold`` (a possible match for review). ``default_model()`` ships sensible values.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping, Optional, Sequence

from resolver.errors import ConfigError
from resolver.matching.canonical import AttributeRecord
from resolver.matching.comparisons import (
    COMPARISONS_VERSION, FIELD_INDEX, FIELD_LEVELS, FIELDS, NULL, compare, compare_total,
)

MODEL_FORMAT = "idres-match-model"
MODEL_FORMAT_VERSION = 1

_POSTCODE_INDEX = FIELD_INDEX["postcode"]
# Fields that mostly agree because the postcode does (a postcode lies in one town): their u is kept twice,
# given the postcodes agree (exact or a typo: ``MatchModel.u``) and given they do not or one is unknown
# (``MatchModel.u_apart``), so that an agreeing postcode is not counted twice, and an agreeing town still
# counts when the postcode is missing or mistyped. (The address's u is always taken given an agreeing
# postcode: an address agreeing where the postcode does not must not weigh more than all three agreeing.)
DEPENDENT_FIELDS: tuple[str, ...] = ("city",)
POSTCODE_AGREES: frozenset[str] = frozenset({"exact", "typo"})

Table = dict[str, dict[str, float]]

_DEFAULT_M: Table = {
    "first_name": {"exact": 0.80, "nickname": 0.05, "jw_92": 0.07, "jw_80": 0.04, "different": 0.04},
    "last_name": {"exact": 0.85, "jw_92": 0.07, "jw_80": 0.03, "different": 0.05},
    "date_of_birth": {"exact": 0.89, "swapped": 0.02, "one_off": 0.05, "year": 0.01, "month": 0.005,
                      "decade": 0.01, "different": 0.015},
    "postcode": {"exact": 0.82, "typo": 0.04, "prefix": 0.06, "different": 0.08},
    "address": {"exact": 0.70, "tsr_90": 0.12, "tsr_75": 0.06, "different": 0.12},
    "city": {"exact": 0.88, "jw_92": 0.04, "different": 0.08},
}
# u of address and city are taken given that the postcode agrees (about one address in twenty within a
# postcode; the city then mostly agrees too): the fields are dependent, and unconditional u values would
# count one agreement two or three times. (``train_model`` measures them among pairs in one postcode.)
_DEFAULT_U: Table = {
    "first_name": {"exact": 0.01, "nickname": 0.002, "jw_92": 0.004, "jw_80": 0.03, "different": 0.954},
    "last_name": {"exact": 0.003, "jw_92": 0.002, "jw_80": 0.02, "different": 0.975},
    "date_of_birth": {"exact": 0.0001, "swapped": 0.0001, "one_off": 0.005, "year": 0.001, "month": 0.002,
                      "decade": 0.12, "different": 0.8718},
    "postcode": {"exact": 0.002, "typo": 0.002, "prefix": 0.02, "different": 0.976},
    "address": {"exact": 0.05, "tsr_90": 0.02, "tsr_75": 0.03, "different": 0.90},
    "city": {"exact": 0.15, "jw_92": 0.01, "different": 0.84},
}
# u of the city among pairs whose postcodes do not agree (or are unknown): as for any two records.
_DEFAULT_U_APART: Table = {
    "city": {"exact": 0.02, "jw_92": 0.003, "different": 0.977},
}
DEFAULT_LINK_THRESHOLD = 24.0
DEFAULT_REVIEW_THRESHOLD = 10.0
DEFAULT_PRIOR = 0.01
_EPS = 1e-9


class MatchModel:
    """Fellegi-Sunter parameters: m and u per field and level, the match proportion among candidate pairs
    (``prior``), and the two decision thresholds on the total log2 weight. Immutable by convention: the
    ``with_*`` methods and the estimators return new models."""

    __slots__ = ("version", "m", "u", "u_apart", "prior", "link_threshold", "review_threshold", "_weights",
                 "_vector", "_vector_apart")

    def __init__(self, m: Mapping[str, Mapping[str, float]], u: Mapping[str, Mapping[str, float]], *,
                 u_apart: Optional[Mapping[str, Mapping[str, float]]] = None,
                 version: str = "custom", prior: float = DEFAULT_PRIOR,
                 link_threshold: float = DEFAULT_LINK_THRESHOLD,
                 review_threshold: float = DEFAULT_REVIEW_THRESHOLD):
        self.m: Table = _table(m, "m")
        self.u: Table = _table(u, "u")
        # (without u_apart, the fields weigh the same whatever the postcode does)
        self.u_apart: Table = _table(u_apart if u_apart is not None else self.u, "u_apart", DEPENDENT_FIELDS)
        if not (0.0 < prior < 1.0):
            raise ConfigError(f"match model: prior must be in (0, 1), not {prior!r}")
        if math.isnan(link_threshold) or math.isnan(review_threshold):  # (NaN compares false: nothing would match)
            raise ConfigError(f"match model: link_threshold and review_threshold must be numbers, not "
                              f"{link_threshold!r} and {review_threshold!r}")
        if review_threshold > link_threshold:
            raise ConfigError("match model: review_threshold must not exceed link_threshold")
        self.version = str(version)
        self.prior = float(prior)
        self.link_threshold = float(link_threshold)
        self.review_threshold = float(review_threshold)
        self._weights: dict[str, dict[str, float]] = {
            f: {NULL: 0.0, **{lv: math.log2(self.m[f][lv] / self.u[f][lv]) for lv in FIELD_LEVELS[f]}}
            for f in FIELDS
        }
        self._vector = tuple(self._weights[f] for f in FIELDS)
        self._vector_apart = tuple(
            {NULL: 0.0, **{lv: math.log2(self.m[f][lv] / self.u_apart[f][lv]) for lv in FIELD_LEVELS[f]}}
            if f in DEPENDENT_FIELDS else self._weights[f] for f in FIELDS)

    # -- scoring -----------------------------------------------------------------------------------
    def level_weight(self, field: str, level: str, postcode_agrees: bool = True) -> float:
        """log2(m/u) of one field's level; 0 for ``null``. The city weighs more when the postcodes do not
        agree (``postcode_agrees`` False): then its agreement is not implied by the postcode's."""
        if postcode_agrees or field not in DEPENDENT_FIELDS:
            return self._weights[field][level]
        return self._vector_apart[FIELD_INDEX[field]][level]

    def weight_of(self, levels: Sequence[str]) -> tuple[float, dict[str, float]]:
        """Total and per-field log2 weights of a comparison vector (``compare`` output)."""
        vector = self._vector if levels[_POSTCODE_INDEX] in POSTCODE_AGREES else self._vector_apart
        parts = {f: w[lv] for f, w, lv in zip(FIELDS, vector, levels)}
        total = 0.0
        for value in parts.values():  # fixed field order: the float sum is reproducible
            total += value
        return total, parts

    def total_of(self, levels: Sequence[str]) -> float:
        """``weight_of(levels)[0]`` without the per-field parts: the same sum, in the same order."""
        vector = self._vector if levels[_POSTCODE_INDEX] in POSTCODE_AGREES else self._vector_apart
        total = 0.0
        for w, lv in zip(vector, levels):
            total += w[lv]
        return total

    def compare_total(self, a: AttributeRecord, b: AttributeRecord) -> tuple[tuple[str, ...], float]:
        """``compare(a, b)`` and ``total_of`` it (in one compiled call where ``compare`` is compiled: the same
        sum, in the same order)."""
        if compare_total is None:
            levels = compare(a, b)
            return levels, self.total_of(levels)
        return compare_total(a, b, self._vector, self._vector_apart, POSTCODE_AGREES)

    def compiled_totals(self) -> bool:
        """Whether ``compare_total`` is the compiled one (``weight_vectors`` are then what it sums)."""
        return compare_total is not None and type(self).compare_total is MatchModel.compare_total

    def weight_vectors(self) -> tuple[tuple[dict[str, float], ...], tuple[dict[str, float], ...]]:
        """Each field's weights by level, in field order: where the postcodes agree, and where they do not."""
        return self._vector, self._vector_apart

    def weight(self, a: AttributeRecord, b: AttributeRecord) -> tuple[float, dict[str, float]]:
        """Fellegi-Sunter match weight of two records and each field's contribution."""
        return self.weight_of(compare(a, b))

    def match_probability(self, total_weight: float) -> float:
        """P(same person | weight) for a candidate pair, from the prior match proportion."""
        log_odds = total_weight + math.log2(self.prior / (1.0 - self.prior))
        if log_odds >= 0:
            return 1.0 / (1.0 + 2.0 ** -log_odds)
        z = 2.0 ** log_odds
        return z / (1.0 + z)

    def classify(self, total_weight: float) -> str:
        """``"link"`` at or above the link threshold, ``"review"`` at or above the review threshold,
        else ``"non_match"``."""
        if total_weight >= self.link_threshold:
            return "link"
        if total_weight >= self.review_threshold:
            return "review"
        return "non_match"

    def is_monotone(self) -> bool:
        """True when, in every field, a better level never weighs less than a worse one (the town: where
        the postcodes do not agree; where they agree its weights are near zero)."""
        for f, w in zip(FIELDS, self._vector_apart):
            ws = [w[lv] for lv in FIELD_LEVELS[f]]
            if any(ws[i] < ws[i + 1] - 1e-9 for i in range(len(ws) - 1)):  # (pooled levels tie, to rounding)
                return False
        return True

    # -- copies ------------------------------------------------------------------------------------
    def with_params(self, *, m: Optional[Mapping] = None, u: Optional[Mapping] = None,
                    u_apart: Optional[Mapping] = None,
                    prior: Optional[float] = None, version: Optional[str] = None,
                    link_threshold: Optional[float] = None,
                    review_threshold: Optional[float] = None) -> "MatchModel":
        return MatchModel(
            self.m if m is None else m, self.u if u is None else u,
            u_apart=self.u_apart if u_apart is None else u_apart,
            version=self.version if version is None else version,
            prior=self.prior if prior is None else prior,
            link_threshold=self.link_threshold if link_threshold is None else link_threshold,
            review_threshold=self.review_threshold if review_threshold is None else review_threshold,
        )

    # -- serialization -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "comparisons_version": COMPARISONS_VERSION,
            "version": self.version,
            "prior": self.prior,
            "link_threshold": self.link_threshold,
            "review_threshold": self.review_threshold,
            "fields": {f: {lv: {"m": self.m[f][lv], "u": self.u[f][lv],
                                **({"u_apart": self.u_apart[f][lv]} if f in DEPENDENT_FIELDS else {})}
                           for lv in FIELD_LEVELS[f]}
                       for f in FIELDS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "match model",
                  check_comparisons: bool = True) -> "MatchModel":
        """A model from ``to_dict`` output. ``check_comparisons``: refuse one estimated under other
        comparison definitions (a model file to use); off when folding a model the log recorded."""
        if not isinstance(data, Mapping) or data.get("format") != MODEL_FORMAT:
            raise ConfigError(f"{where}: not an idres match model (format must be {MODEL_FORMAT!r}): write one with "
                              f"`idres train FILE.jsonl --out model.json`, or leave match_model out")
        if data.get("format_version") != MODEL_FORMAT_VERSION:
            raise ConfigError(f"{where}: format_version {data.get('format_version')!r} is not supported "
                              f"(expected {MODEL_FORMAT_VERSION})")
        if check_comparisons and data.get("comparisons_version") != COMPARISONS_VERSION:
            raise ConfigError(f"{where}: estimated for comparisons version {data.get('comparisons_version')!r},"
                              f" this build compares with version {COMPARISONS_VERSION}; re-estimate it")
        try:
            spec = data["fields"]
            m = {f: {lv: spec[f][lv]["m"] for lv in FIELD_LEVELS[f]} for f in FIELDS}
            u = {f: {lv: spec[f][lv]["u"] for lv in FIELD_LEVELS[f]} for f in FIELDS}
            u_apart = {f: {lv: spec[f][lv]["u_apart"] for lv in FIELD_LEVELS[f]} for f in DEPENDENT_FIELDS}
            return cls(m, u, u_apart=u_apart, version=data["version"], prior=float(data["prior"]),
                       link_threshold=float(data["link_threshold"]),
                       review_threshold=float(data["review_threshold"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: missing or malformed entry ({type(exc).__name__}: {exc}); "
                              f"write the model again with `idres train`") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "match model") -> "MatchModel":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON: {exc}") from None
        return cls.from_dict(data, where)

    def fingerprint(self) -> str:
        """A short hash of the parameters, to record with decisions made under this model."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MatchModel) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"MatchModel(version={self.version!r}, prior={self.prior!r}, fingerprint={self.fingerprint()})"


def _table(t: Mapping[str, Mapping[str, float]], name: str, fields: Sequence[str] = FIELDS) -> Table:
    out: Table = {}
    for f in fields:
        if f not in t:
            raise ConfigError(f"match model: {name} has no entry for field {f!r}")
        row = {}
        for lv in FIELD_LEVELS[f]:
            value = t[f].get(lv) if isinstance(t[f], Mapping) else None
            if not isinstance(value, (int, float)) or not (0.0 < value <= 1.0):
                raise ConfigError(f"match model: {name}[{f}][{lv}] must be a probability in (0, 1], "
                                  f"not {value!r}")
            row[lv] = float(value)
        total = sum(row.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"match model: {name}[{f}] sums to {total!r}, not 1")
        extra = set(t[f]) - set(FIELD_LEVELS[f])
        if extra:
            raise ConfigError(f"match model: {name}[{f}] has unknown level(s) {sorted(extra)}")
        out[f] = row
    return out


def default_model() -> MatchModel:
    """The shipped parameters: to use until there is data to estimate from."""
    return MatchModel(_DEFAULT_M, _DEFAULT_U, u_apart=_DEFAULT_U_APART, version="default-2")
