"""TextRows: dicts kept as compact JSON text read back as appended, through a checkpoint too, and cheap to pickle."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, strategies as st

from projections.texts import TextRows

_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                       | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                       max_leaves=12)
_rows = st.lists(st.dictionaries(st.text(), _values, max_size=6), max_size=12)


@given(_rows)
def test_rows_read_back_as_appended_and_through_a_pickle(rows):
    kept = TextRows()
    for row in rows:
        kept.append(row)
    assert len(kept) == len(rows) and list(kept) == rows and [kept[i] for i in range(len(rows))] == rows
    back = pickle.loads(pickle.dumps(kept, pickle.HIGHEST_PROTOCOL))
    assert back == kept and list(back) == rows
    if rows:
        kept[0]["changed"] = True  # (a fresh dict each time: nothing kept changes)
        assert kept[0] == rows[0]


def test_a_tuple_reads_back_as_json_gives_it():
    kept = TextRows()
    kept.append({"via": ("email:a@b.c", "phone:+447700900123"), "weight": 0.1 + 0.2})
    assert kept[0] == {"via": ["email:a@b.c", "phone:+447700900123"], "weight": 0.1 + 0.2}


def test_a_pickle_remembers_one_object_a_row():
    kept = TextRows()
    for i in range(1000):
        kept.append({"survivor_id": f"p_{i:016x}", "absorbed_ids": [f"p_{i + 1:016x}"], "via": ["email:x@y.z"],
                     "rule": "shared_identifier"})

    class Null:
        def write(self, data):
            pass

    pickler = pickle.Pickler(Null(), pickle.HIGHEST_PROTOCOL)
    pickler.dump(kept)
    assert len(pickler.memo.copy()) <= len(kept) + 8  # (the rows' text; the list, the object, its class and arguments)


@pytest.mark.parametrize("texts", [("a",), ["{}", 1], "{}"])
def test_only_a_list_of_strings_makes_rows(texts):
    with pytest.raises(TypeError):
        TextRows(texts)  # type: ignore[arg-type]
