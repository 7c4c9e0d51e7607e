"""A configuration is type-checked when it is loaded: a wrong value is one line naming the file, the key,
the value and what is expected, never hundreds of events rejected later."""

from __future__ import annotations

import datetime
import json
from dataclasses import fields

import phonenumbers
import pytest
from hypothesis import given, settings, strategies as st

from projections.customer import ProjectionConfig
from resolver.config import IdentifierRule, ResolverConfig
from resolver.errors import ConfigError
from resolver.matching import default_model
from streams.settings import FROM_RESOLVER, load_settings

KINDS = ("email", "phone", "loyalty", "device", "handle", "text")


WRONG_VALUES = [
    ('[identifier_types.loyalty_id]\nmax_per_profile = "three"\n',
     'rules.toml: identifier_types.loyalty_id.max_per_profile = "three": expected a whole number >= 1 '
     '(or leave it out for no limit)'),
    ('[identifier_types.loyalty_id]\npriority = "high"\n',
     'rules.toml: identifier_types.loyalty_id.priority = "high": expected a whole number'),
    ("[identifier_types.email]\npriority = true\n",  # TOML true is not priority 1
     "rules.toml: identifier_types.email.priority = true: expected a whole number"),
    ("[identifier_types.email]\nmax_per_profile = 2.0\n",
     "rules.toml: identifier_types.email.max_per_profile = 2.0: expected a whole number >= 1"),
    ("[identifier_types.email]\nmax_per_profile = 0\n",
     "rules.toml: identifier_types.email.max_per_profile = 0: expected a whole number >= 1"),
    ('[identifier_types.device_id]\nweak = "yes"\n',
     'rules.toml: identifier_types.device_id.weak = "yes": expected true or false'),
    ('[identifier_types.member_no]\nkind = "number"\n',
     'rules.toml: identifier_types.member_no.kind = "number": expected one of "email", "phone", "loyalty", '
     '"device", "handle", "text"'),
    ('[identifier_types.device_id]\nmax_cooccurring = { email = "2" }\n',
     'rules.toml: identifier_types.device_id.max_cooccurring.email = "2": expected a whole number >= 1'),
    ("[identifier_types.device_id]\nmax_cooccurring = 2\n",
     "rules.toml: identifier_types.device_id.max_cooccurring = 2: expected a table"),
    ('[identifier_types.device_id]\nblocked_values = "kiosk-01"\n',
     'rules.toml: identifier_types.device_id.blocked_values = "kiosk-01": expected a list of strings'),
    ('[identifier_types."member.no"]\nprefixes = ["M", 7]\n',
     'rules.toml: identifier_types."member.no".prefixes = ["M", 7]: expected a list of strings'),
    ("identifier_types = 3\n", "rules.toml: identifier_types = 3: expected a table"),
    ('[other_types]\npriority = "low"\n', 'rules.toml: other_types.priority = "low": expected a whole number'),
    ("fuzzy_matching = 1\n", "rules.toml: fuzzy_matching = 1: expected true or false"),
    ('dob_conflict = "false"\n', 'rules.toml: dob_conflict = "false": expected true or false'),
    ('default_region = "gb"\n', 'rules.toml: default_region = "gb": expected a region code phone numbers are read by (ISO 3166, two letters)'),
    ('default_region = "XX"\n', 'rules.toml: default_region = "XX": expected a region code phone numbers are read by (ISO 3166, two letters)'),
    ("date_order = 2020-01-01\n", 'rules.toml: date_order = 2020-01-01: expected one of "mdy", "dmy"'),
    ('max_block_size = "64"\n', 'rules.toml: max_block_size = "64": expected a whole number >= 1'),
    ("max_reviews_per_event = -1\n", "rules.toml: max_reviews_per_event = -1: expected a whole number >= 0"),
    ("match_model = 5\n", "rules.toml: match_model = 5: expected the path of a match model file"),
    ('match_model = "missing.json"\n', 'rules.toml: match_model = "missing.json": match model file'),
    ('email_domain_aliases = { "googlemail.com" = 1 }\n',
     'rules.toml: email_domain_aliases."googlemail.com" = 1: expected a non-empty string'),
    ('placeholder_email_locals = "test"\n', 'rules.toml: placeholder_email_locals = "test": expected a list'),
    ("projection = 3\n", "rules.toml: projection = 3: expected a table"),
    ('[identifier_types."member:no"]\npriority = 3\n',
     "rules.toml: identifier_types.\"member:no\": identifier type 'member:no' holds ':'"),
    ("[identifier_types.record]\npriority = 3\n",
     "rules.toml: identifier_types.record: identifier type 'record' is reserved for anonymous records"),
    ('[projection]\npurchase_types = "purchase"\n',
     'rules.toml: projection.purchase_types = "purchase": expected a list of strings'),
    ('[projection]\ntrusted_channels_by_attribute = { date_of_birth = "store" }\n',
     'rules.toml: projection.trusted_channels_by_attribute.date_of_birth = "store": expected a list of channel names as events give them'),
]


@pytest.mark.parametrize("toml, message", WRONG_VALUES,
                         ids=[m.split(" = ")[0].removeprefix("rules.toml: ") for _, m in WRONG_VALUES])
def test_a_wrong_value_is_one_line_naming_file_key_value_and_expectation(tmp_path, monkeypatch, toml, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules.toml").write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings("rules.toml")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_every_setting_is_type_checked(tmp_path):
    """Each top-level key, rule field and projection key refuses a value of no sensible type (a list of
    tables), naming itself: a setting added later cannot skip validation."""
    path = tmp_path / "rules.toml"
    keys = [f.name for f in fields(ResolverConfig)]
    keys += [f"identifier_types.email.{f.name}" for f in fields(IdentifierRule)]
    keys += [f"other_types.{f.name}" for f in fields(IdentifierRule)]
    keys += [f"projection.{f.name}" for f in fields(ProjectionConfig) if f.name not in FROM_RESOLVER]
    for key in keys:
        *tables, leaf = key.split(".")
        path.write_text((f"[{'.'.join(tables)}]\n" if tables else "") + f"{leaf} = [{{}}]\n")
        with pytest.raises(ConfigError, match=f"^{path}: {key} = \\[{{}}\\]: expected "):
            load_settings(path)


def test_a_full_valid_config_loads_as_the_runtime_types(tmp_path):
    model = default_model().to_dict()
    model["version"] = "mine-1"
    (tmp_path / "model.json").write_text(json.dumps(model))
    path = tmp_path / "rules.toml"
    path.write_text(VALID_TOML)
    config, projection = load_settings(path)
    assert config.default_region == "GB" and config.date_order == "dmy" and config.fuzzy_matching is False
    assert config.match_model.version == "mine-1"
    assert config.placeholder_email_domains == ("example.com",)
    loyalty = config.rule("loyalty_id")
    assert loyalty == IdentifierRule(priority=10, kind="loyalty", weak=False, max_per_profile=1, successive=False,
                                     max_cooccurring={"email": 3, "date_of_birth": 1},
                                     blocked_values=("LOY-0000",), prefixes=("LOY", "CARD"))
    assert config.rule("member_no").priority == 15 and config.rule("member_no").max_per_profile is None
    assert projection.trusted_channels_by_attribute == {"date_of_birth": ("store",)}
    assert projection.purchase_types == ("purchase",)


VALID_TOML = """\
default_region = "GB"
date_order = "dmy"
fuzzy_matching = false
frequency_adjustments = true
dob_conflict = true
link_different_first_names = false
strip_email_tags = true
match_model = "model.json"
max_block_size = 32
max_reviews_per_event = 0
dotless_email_domains = ["gmail.com"]
email_domain_aliases = { "googlemail.com" = "gmail.com" }
placeholder_email_locals = ["test"]
placeholder_email_domains = ["example.com"]

[identifier_types.loyalty_id]
priority = 10
kind = "loyalty"
weak = false
max_per_profile = 1
successive = false
max_cooccurring = { email = 3, date_of_birth = 1 }
blocked_values = ["LOY-0000"]
prefixes = ["LOY", "CARD"]

[identifier_types.member_no]
priority = 15

[other_types]
priority = 50
kind = "text"

[projection]
untrusted_channels = ["social"]
trusted_channels_by_attribute = { date_of_birth = ["store"] }
purchase_types = ["purchase"]
refund_types = ["refund"]
case_open_types = ["case_opened"]
case_close_types = ["case_closed"]
"""

# -- property: any wrong-typed value anywhere in a valid config ---------------------------------------
VALID = {
    "default_region": "GB", "date_order": "dmy", "fuzzy_matching": True, "max_block_size": 32,
    "max_reviews_per_event": 3, "dotless_email_domains": ["gmail.com"],
    "email_domain_aliases": {"googlemail.com": "gmail.com"},
    "identifier_types": {"loyalty_id": {"priority": 10, "kind": "loyalty", "weak": False, "max_per_profile": 1,
                                        "max_cooccurring": {"email": 3}, "blocked_values": ["LOY-0"],
                                        "prefixes": ["LOY"]}},
    "other_types": {"priority": 50},
    "projection": {"untrusted_channels": ["social"], "trusted_channels_by_attribute": {"date_of_birth": ["store"]}},
}


def _whole(minimum=None):
    return lambda v: not (type(v) is int and (minimum is None or v >= minimum))


def _strings(v):
    return not (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _table_of(wrong_item):
    return lambda v: not (isinstance(v, dict) and not any(wrong_item(x) for x in v.values()))


# (path in the config, the key as the message names it, which values are wrong)
LEAVES = [
    (("default_region",), "default_region", lambda v: not (isinstance(v, str) and v in phonenumbers.SUPPORTED_REGIONS)),
    (("date_order",), "date_order", lambda v: v not in ("mdy", "dmy")),
    (("fuzzy_matching",), "fuzzy_matching", lambda v: not isinstance(v, bool)),
    (("frequency_adjustments",), "frequency_adjustments", lambda v: not isinstance(v, bool)),
    (("max_block_size",), "max_block_size", _whole(1)),
    (("max_reviews_per_event",), "max_reviews_per_event", _whole(0)),
    (("dotless_email_domains",), "dotless_email_domains", _strings),
    (("email_domain_aliases",), "email_domain_aliases",
     _table_of(lambda x: not (isinstance(x, str) and x.strip()))),
    (("match_model",), "match_model", lambda v: not isinstance(v, str)),
    (("identifier_types",), "identifier_types", lambda v: not isinstance(v, dict)),
    (("identifier_types", "loyalty_id"), "identifier_types.loyalty_id", lambda v: not isinstance(v, dict)),
    (("identifier_types", "loyalty_id", "priority"), "identifier_types.loyalty_id.priority", _whole()),
    (("identifier_types", "loyalty_id", "kind"), "identifier_types.loyalty_id.kind", lambda v: v not in KINDS),
    (("identifier_types", "loyalty_id", "weak"), "identifier_types.loyalty_id.weak", lambda v: not isinstance(v, bool)),
    (("identifier_types", "loyalty_id", "max_per_profile"), "identifier_types.loyalty_id.max_per_profile", _whole(1)),
    (("identifier_types", "loyalty_id", "max_cooccurring"), "identifier_types.loyalty_id.max_cooccurring",
     _table_of(_whole(1))),
    (("identifier_types", "loyalty_id", "blocked_values"), "identifier_types.loyalty_id.blocked_values", _strings),
    (("identifier_types", "loyalty_id", "prefixes"), "identifier_types.loyalty_id.prefixes", _strings),
    (("other_types", "weak"), "other_types.weak", lambda v: not isinstance(v, bool)),
    (("projection",), "projection", lambda v: not isinstance(v, dict)),
    (("projection", "untrusted_channels"), "projection.untrusted_channels", _strings),
    (("projection", "trusted_channels_by_attribute"), "projection.trusted_channels_by_attribute",
     _table_of(_strings)),
]

_scalars = st.one_of(
    st.integers(min_value=-2**63, max_value=2**63 - 1), st.floats(), st.booleans(), st.text(max_size=8),
    st.sampled_from(["GB", "email", "mdy", "3", "true", ""]), st.dates(),
    st.datetimes(min_value=datetime.datetime(1, 1, 1)),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\' or not (" " <= ch <= "~"):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml(v) -> str:
    """An inline TOML value (the test's own writer: a different implementation from the one under test)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_string(k)} = {_toml(x)}" for k, x in v.items()) + "}"


@st.composite
def _wrong_config(draw):
    path, name, wrong = draw(st.sampled_from(LEAVES))
    value = draw(_values.filter(wrong))
    config = json.loads(json.dumps(VALID))
    table = config
    for key in path[:-1]:
        table = table[key]
    table[path[-1]] = value
    return config, name


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("wrong-types")


@settings(max_examples=300, deadline=None)
@given(_wrong_config())
def test_any_wrong_typed_value_is_a_config_error_naming_its_key(scratch, case):
    config, name = case
    path = scratch / "rules.toml"
    path.write_text("".join(f"{key} = {_toml(value)}\n" for key, value in config.items()), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {name}")
    assert "\n" not in message


def test_the_valid_base_of_the_property_loads(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("".join(f"{key} = {_toml(value)}\n" for key, value in VALID.items()))
    config, projection = load_settings(path)
    assert config.rule("loyalty_id").max_cooccurring == {"email": 3}
    assert projection.untrusted_channels == ("social",)
