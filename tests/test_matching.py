"""Probabilistic matching: agreement levels, Fellegi-Sunter weights, estimation, model files."""

import dataclasses
import math
import random

import pytest
from hypothesis import given, settings, strategies as st
from rapidfuzz.distance import OSA

from resolver.errors import ConfigError
from resolver.matching import (
    POSTCODE_AGREES,    MAX_FREQUENCY_ADJUSTMENT, frequency_adjustment,
    BLOCKING_RULES, FIELD_LEVELS, FIELDS, NULL, AttributeRecord, MatchModel, blocking_keys, compare, compare_address,
    compare_city, compare_date_of_birth, compare_first_name, compare_last_name, compare_postcode,
    candidate_pairs_by_rule, default_model, estimate_m_em, estimate_u, hard_conflict, soundex,
)
from resolver.matching.blocking import candidate_codes_by_rule
from resolver.matching.canonical import canonical_date
from streams.settings import load_match_model, save_match_model

R = AttributeRecord


# -- canonical forms and blocking -------------------------------------------------------------------
def test_records_are_canonical_and_idempotent():
    r = R(" José ", "O'Brien-Smith", "1985-03-07", "12, High Street", "sw1a 1aa", "Saint-Étienne")
    assert (r.first_name, r.last_name, r.address, r.postcode, r.city) == (
        "jose", "obrien smith", "12 high st", "SW1A1AA", "saint etienne")
    assert R(r.first_name, r.last_name, r.date_of_birth, r.address, r.postcode, r.city) == r
    assert R(date_of_birth="1985-13-01").date_of_birth is None
    assert R(first_name="  ").first_name is None


def test_from_normalizer_attributes():
    r = R.from_attributes({"first_name": "Robert", "date_of_birth": "1985-03-07", "loyalty": "x"})
    assert r == R("robert", None, "1985-03-07")


def test_soundex():
    assert soundex("robert") == soundex("rupert") == "R163"
    assert soundex("smith") == soundex("smyth") == "S530"
    assert soundex("ashcraft") == "A261"  # h does not separate s and c
    assert soundex("tymczak") == "T522"
    assert soundex("lee") == "L000"


def test_blocking_keys_sorted_and_tolerant():
    a = R("Bob", "Smith", "1985-03-07", "12 High Street", "SW1A 1AA")
    b = R("Robert", "Smyth", "1985-07-03", "12 high st", "sw1a1aa")
    ka, kb = blocking_keys(a), blocking_keys(b)
    assert ka == sorted(set(ka)) and kb == sorted(set(kb))
    # nickname, surname spelling and day/month swap land in the same blocks
    core = {"ln_dob:S530:1985-03-07", "fn_dob:robert:1985-03-07", "ln_pc:S530:SW1A1AA",
            "addr_pc:12 high st:SW1A1AA", "fn_ln:robert:S530"}
    assert core <= set(ka) and core <= set(kb)
    # names entered the other way round meet the right ones
    swapped = R("Smith", "Bob", "1985-03-07")
    assert "ln_dob:S530:1985-03-07" in blocking_keys(swapped)
    assert compare(swapped, a)[:2] == ("exact", "exact")
    assert blocking_keys(R()) == []
    assert blocking_keys(R(None, None, None, None, "SW1A 1AA")) == []  # a postcode alone is too broad
    # a gap or a typo in one field leaves keys on the others
    # (one name alone may be a surname entered as the first name: it is keyed both ways)
    assert blocking_keys(R("Ann", None, None, None, "SW1A 1AA")) == ["fn_pc:A500:SW1A1AA", "ln_pc:A500:SW1A1AA"]
    typo = R("Bob", "Smith", "1985-03-17", "12 High Street", "SW1A 1AB", "London")
    assert set(blocking_keys(typo)) & set(blocking_keys(R("Robert", "Smith", "1985-03-07", None, "SW1A 1AA", "London")))
    stranger = R("Mary", "Jones", "1990-01-02", "5 Low Road", "EC1A 1BB")
    assert not set(blocking_keys(stranger)) & set(ka)


def test_titles_are_not_first_names():
    assert R("Mrs", "Kennard").first_name is None
    assert R("Sir George", "Chalmers").first_name == "george"
    assert R("Dr. Ann-Marie", "Jones").first_name == "ann marie"
    assert R("Lord", "Lord").last_name == "lord"  # a surname is kept as it is
    assert compare(R("Mrs", "Kennard", "1850-01-04"), R("Ann", "Kennard", "1850-01-04"))[0] == NULL


def test_a_lone_name_may_be_the_surname():
    lone, full = R("Watts", None, "1860-06-07"), R("William", "Watts", "1860-06-07")
    assert compare(lone, full)[:2] == compare(full, lone)[:2] == (NULL, "exact")
    assert compare(R("Wiliam", None), full)[:2] == ("jw_92", NULL)  # a first name stays a first name
    assert set(blocking_keys(lone)) & set(blocking_keys(full))


# -- agreement levels -------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b,level", [
    ("robert", "robert", "exact"),
    ("bob", "robert", "nickname"),
    ("robert", "bobby", "nickname"),
    ("jon", "john", "nickname"),
    ("liz", "elizabeth", "nickname"),
    ("sarah", "sally", "nickname"),
    ("john", "ian", "nickname"),
    ("jonathan", "jonahtan", "jw_92"),
    ("catherine", "catherien", "jw_92"),
    ("robert", "roberta", "jw_92"),
    ("maria", "marianne", "jw_92"),
    ("mary", "marie", "nickname"),
    ("mary", "mayra", "jw_80"),
    ("robert", "mary", "different"),
    ("robert", None, NULL),
])
def test_first_name_levels(a, b, level):
    ra, rb = R(first_name=a), R(first_name=b)
    assert compare_first_name(ra.first_name, rb.first_name) == level
    assert compare_first_name(rb.first_name, ra.first_name) == level


@pytest.mark.parametrize("a,b,level", [
    ("Smith", "SMITH", "exact"), ("Smith", "Smithe", "jw_92"), ("Smith", "Smyth", "jw_80"),
    ("Smith", "Jones", "different"), ("Müller", "Muller", "exact"), (None, "Smith", NULL),
])
def test_last_name_levels(a, b, level):
    assert compare_last_name(R(last_name=a).last_name, R(last_name=b).last_name) == level


@pytest.mark.parametrize("a,b,level", [
    ("1985-03-07", "1985-03-07", "exact"),
    ("1985-03-07", "1985-07-03", "swapped"),
    ("1985-03-07", "1986-03-07", "one_off"),   # year typo
    ("1985-03-07", "1958-03-07", "one_off"),   # transposed digits
    ("1985-03-07", "1985-03-17", "one_off"),   # one digit
    ("1985-03-07", "1985-03-28", "one_off"),   # one component
    ("1985-03-07", "1985-04-02", "month"),     # 26 days
    ("1985-03-07", "1990-11-23", "decade"),
    ("1985-03-07", "1985-11-23", "decade"),
    ("1985-03-07", "2001-11-23", "different"),
    ("1985-03-07", None, NULL),
])
def test_date_of_birth_levels(a, b, level):
    assert compare_date_of_birth(a, b) == level
    assert compare_date_of_birth(b, a) == level


@settings(max_examples=500, deadline=None)
@given(st.dates(), st.dates(), st.sampled_from([None, "swap", "digit"]))
def test_dates_one_typo_apart_differ_in_at_most_two_parts(a, b, typo):
    # (compare_date_of_birth looks for a typo only where year, month and day do not all differ)
    x = a.isoformat()
    y = b.isoformat()
    digits = list(x.replace("-", ""))
    if typo == "swap":  # a typo made on purpose: two adjacent digits exchanged, or one digit changed
        k = b.day % 7
        digits[k], digits[k + 1] = digits[k + 1], digits[k]
    elif typo == "digit":
        digits[b.day % 8] = str((int(digits[b.day % 8]) + 1) % 10)
    if typo:
        y = f"{''.join(digits[:4])}-{''.join(digits[4:6])}-{''.join(digits[6:])}"
    parts = (x[:4] != y[:4]) + (x[5:7] != y[5:7]) + (x[8:] != y[8:])
    one_typo = OSA.distance(x.replace("-", ""), y.replace("-", "")) <= 1
    assert not (one_typo and parts == 3)
    if typo and x != y and canonical_date(y):
        assert compare_date_of_birth(x, y) in ("one_off", "swapped")


def test_same_day_and_month_is_exact_not_swapped():
    assert compare_date_of_birth("1985-03-03", "1985-03-03") == "exact"


@pytest.mark.parametrize("a,b,level", [
    ("SW1A 1AA", "sw1a1aa", "exact"), ("SW1A 1AA", "SW1P 3BU", "prefix"), ("SW1A 1AA", "EC1A 1BB", "different"),
    ("10001", "10003", "typo"), ("4570", "4507", "typo"), ("10001", "10093", "prefix"), ("AB", "AB1", "different"),
    (None, "10001", NULL),
])
def test_postcode_levels(a, b, level):
    assert compare_postcode(R(postcode=a).postcode, R(postcode=b).postcode) == level


@pytest.mark.parametrize("a,b,level", [
    ("12 High Street", "12, high st.", "exact"),
    ("Flat 3, 12 High Street", "12 High Street", "tsr_90"),
    ("12 High Street", "12 Hihg Street", "tsr_90"),
    ("12 Church Lane", "12 Church Road", "tsr_75"),
    ("12 High Street", "14 High Street", "different"),  # the neighbours
    ("12 High Street", "99 Lime Grove", "different"),
    (None, "12 High Street", NULL),
])
def test_address_levels(a, b, level):
    ra, rb = R(address=a), R(address=b)
    assert compare_address(ra.address, rb.address) == level
    assert compare_address(rb.address, ra.address) == level


def test_city_levels():
    assert compare_city("london", "london") == "exact"
    assert compare_city("manchester", "manchster") == "jw_92"
    assert compare_city("london", "leeds") == "different"


# -- hard conflicts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b,conflict", [
    ("1985-03-07", "1985-03-07", False), ("1985-03-07", "1985-07-03", False), ("1985-03-07", "1985-03-08", False),
    ("1985-03-07", "1958-03-07", False), ("1985-03-07", None, False),
    ("1985-03-07", "1985-03-28", False), ("1985-03-31", "1985-04-30", False),  # within a month
    ("1985-03-07", "1985-05-28", True), ("1985-03-07", "1990-11-23", True), ("1985-03-07", "1986-04-07", True),
])
def test_hard_conflict_on_dates_of_birth(a, b, conflict):
    # on attributes alone the same full name does not vouch for a date years out: namesakes share it
    ra, rb = R("Ann", "Lee", a), R("Ann", "Lee", b)
    assert (hard_conflict(ra, rb) is not None) == conflict
    assert hard_conflict(ra, rb) == hard_conflict(rb, ra)


def test_a_high_weight_does_not_remove_a_hard_conflict():
    a = R("Ann", "Lee", "1985-03-07", "1 Mill Lane", "LS1 4AP", "Leeds")
    b = R("Ann", "Lee", "1971-10-30", "1 Mill Lane", "LS1 4AP", "Leeds")  # mother and daughter
    assert hard_conflict(a, b) == "dates of birth differ: 1971-10-30 vs 1985-03-07"


# -- weights ----------------------------------------------------------------------------------------
names = st.sampled_from(["robert", "bob", "rob", "roberta", "john", "jon", "jonathan", "mary", "maria", None])
surnames = st.sampled_from(["smith", "smyth", "smithe", "jones", "lee", None])
dobs = st.sampled_from(["1985-03-07", "1985-07-03", "1985-03-08", "1958-03-07", "1990-11-23", None])
addresses = st.sampled_from(["12 high st", "14 high st", "flat 3 12 high st", "12 hihg st", "5 low rd", None])
postcodes = st.sampled_from(["SW1A1AA", "SW1P3BU", "EC1A1BB", None])
cities = st.sampled_from(["london", "londn", "leeds", None])
records = st.builds(R, names, surnames, dobs, addresses, postcodes, cities)


@settings(max_examples=200, deadline=None)
@given(st.lists(records, max_size=24), st.integers(2, 5))
def test_candidate_pairs_are_the_pairs_sharing_a_key_within_the_block_cap(recs, cap):
    # the definition, pair by pair: (i, j), i < j, is a candidate of a rule when both records hold one key of
    # that rule and each is among the first ``cap`` records that hold it
    holders: dict[str, list[int]] = {}
    for i, rec in enumerate(recs):
        for key in blocking_keys(rec):
            holders.setdefault(key, []).append(i)
    want = {rule: set() for rule in BLOCKING_RULES}
    for i in range(len(recs)):
        for j in range(i + 1, len(recs)):
            for key in set(blocking_keys(recs[i])) & set(blocking_keys(recs[j])):
                if i in holders[key][:cap] and j in holders[key][:cap]:
                    want[key.split(":")[0]].add((i, j))
    got = candidate_pairs_by_rule(recs, cap)
    assert got == {rule: sorted(pairs) for rule, pairs in want.items()}
    n = len(recs)
    assert candidate_codes_by_rule(recs, cap) == {rule: [i * n + j for i, j in pairs] for rule, pairs in got.items()}


def test_default_model_is_monotone_and_signed():
    model = default_model()
    assert model.is_monotone()
    for f in FIELDS:
        best, *_, worst = FIELD_LEVELS[f]
        assert model.level_weight(f, best) > 0 > model.level_weight(f, worst)
        assert model.level_weight(f, NULL) == 0


@settings(max_examples=300, deadline=None)
@given(records, records)
def test_weight_is_symmetric_and_sums_its_parts(a, b):
    model = default_model()
    total, parts = model.weight(a, b)
    assert (total, parts) == model.weight(b, a)
    assert list(parts) == list(FIELDS)
    assert math.isclose(total, sum(parts.values()))
    for f, level in zip(FIELDS, compare(a, b)):
        if level == NULL:
            assert parts[f] == 0.0
        assert parts[f] == model.level_weight(f, level, compare(a, b)[3] in POSTCODE_AGREES)


@settings(max_examples=300, deadline=None)
@given(records, records, st.sampled_from(FIELDS))
def test_null_fields_contribute_nothing(a, b, field):
    model = default_model()
    blank = R(**{f: (None if f == field else getattr(b, f)) for f in FIELDS})
    total, parts = model.weight(a, blank)
    if field == "last_name" and blank.first_name and a.last_name and not a.first_name == blank.first_name:
        # a lone name may be the surname: it is then compared with a's surname, and the first name is null
        assert parts["first_name"] == 0.0 or parts["last_name"] == 0.0
        return
    assert parts[field] == 0.0
    if field in ("first_name", "last_name"):
        return  # the two names are compared as a pair (either way round): blanking one changes the other
    if field == "postcode":
        return  # the city weighs more when the postcodes are not known to agree
    full_total, full_parts = model.weight(a, b)
    assert math.isclose(total, full_total - full_parts[field])


@settings(max_examples=300, deadline=None)
@given(records, records, st.sampled_from(FIELDS))
def test_agreeing_on_a_field_never_lowers_the_weight(a, b, field):
    """Replacing one field of b by a's value (a better or equal agreement) never lowers the weight."""
    model = default_model()
    agreeing = R(**{f: (getattr(a, f) if f == field else getattr(b, f)) for f in FIELDS})
    if getattr(a, field) is not None:
        assert model.weight(a, agreeing)[0] >= model.weight(a, b)[0]


def test_weights_fall_with_each_worse_level():
    model = default_model()
    a = R("robert", "smith", "1985-03-07", "12 high st", "SW1A1AA", "london")
    firsts = ["robert", "bob", "roberta", "roger", "mary"]
    assert [compare_first_name("robert", x) for x in firsts] == list(FIELD_LEVELS["first_name"])
    ws = [model.weight(a, R(x, "smith", "1985-03-07"))[0] for x in firsts]
    assert ws == sorted(ws, reverse=True) and len(set(ws)) == len(ws)
    dates = ["1985-03-07", "1985-07-03", "1985-03-08", "1990-11-23"]
    ws = [model.weight(a, R("robert", "smith", d))[0] for d in dates]
    assert ws == sorted(ws, reverse=True) and len(set(ws)) == len(ws)


def test_same_person_with_typos_links_and_neighbours_with_a_shared_surname_do_not():
    model = default_model()
    threshold = model.link_threshold
    a = R("Jonathan", "Smith", "1985-03-07", "10 Downing Street", "SW1A 1AA", "London")
    typos = R("Jonathon", "Smithe", "1985-07-03", "10 Downing St", "SW1A1AA", "Londn")
    assert model.weight(a, typos)[0] > threshold
    assert model.classify(model.weight(a, typos)[0]) == "link"
    nickname_no_dob = R("Jon", "Smith", None, "10 Downing St", "SW1A 1AA", None)
    assert model.weight(a, nickname_no_dob)[0] > threshold
    # Two people sharing a surname and a postcode: a different first name and date of birth.
    neighbour = R("Mary", "Smith", "1960-11-23", "14 Downing Street", "SW1A 1AA", "London")
    assert model.weight(a, neighbour)[0] < threshold
    assert model.classify(model.weight(a, neighbour)[0]) == "non_match"
    # Even at the same address (a relative), without a date of birth: never an automatic link.
    relative = R("Mary", "Smith", None, "10 Downing Street", "SW1A 1AA", "London")
    assert model.weight(a, relative)[0] < threshold
    # A name and a postcode alone (a store purchase) is worth a review, not a link.
    store = R("Jonathan", "Smith", None, None, "SW1A 1AA", None)
    assert model.classify(model.weight(a, store)[0]) == "review"


def test_match_probability_and_classification():
    model = default_model()
    assert model.match_probability(0.0) == pytest.approx(model.prior)
    assert model.match_probability(60.0) > 0.999 and model.match_probability(-60.0) < 1e-6
    assert model.classify(model.link_threshold) == "link"
    assert model.classify(model.review_threshold) == "review"
    assert model.classify(model.review_threshold - 0.01) == "non_match"


# -- model files ------------------------------------------------------------------------------------
def test_model_json_round_trip(tmp_path):
    model = default_model()
    path = tmp_path / "model.json"
    save_match_model(model, path)
    loaded = load_match_model(path)
    assert loaded == model and loaded.version == "default-2"
    assert loaded.weight(R("bob", "lee", city="Leeds"), R("robert", "lee", city="Leeds"))[1]["city"] > 0
    assert loaded.fingerprint() == model.fingerprint()
    assert MatchModel.from_dict(model.to_dict()) == model
    assert loaded.weight(R("bob", "lee"), R("robert", "lee")) == model.weight(R("bob", "lee"), R("robert", "lee"))


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(format="other"), "not an idres match model .*: write one with `idres train FILE.jsonl"),
    (lambda d: d.update(format_version=99), "format_version"),
    (lambda d: d.update(comparisons_version=0), "re-estimate"),
    (lambda d: d["fields"]["first_name"]["exact"].update(m=0.0), "probability"),
    (lambda d: d["fields"]["postcode"]["exact"].update(u=0.5), "sums to"),
    (lambda d: d["fields"].pop("city"), "city"),
    (lambda d: d.update(review_threshold=99.0), "review_threshold"),
    # (NaN compares false either way: it passed, and turned linking and reviews off without a word)
    (lambda d: d.update(link_threshold=float("nan"), review_threshold=float("nan")), "must be numbers, not nan"),
    (lambda d: d.update(link_threshold=float("nan")), "must be numbers"),
    (lambda d: d.update(prior="often"), "malformed entry .*ValueError"),
    (lambda d: d["fields"]["city"]["exact"].update(m="high"), "malformed entry|probability"),
])
def test_bad_model_files_are_refused(mutate, message):
    data = default_model().to_dict()
    mutate(data)
    with pytest.raises(ConfigError, match=message):
        MatchModel.from_dict(data)


def test_missing_or_invalid_model_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_match_model(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_match_model(tmp_path / "bad.json")


# -- estimation -------------------------------------------------------------------------------------
FIRST = ["robert", "william", "elizabeth", "margaret", "james", "john", "katherine", "thomas", "mary",
         "sarah", "laura", "oliver", "george", "emily", "hannah", "lucy", "daniel", "peter", "susan", "alice"]
LAST = ["smith", "jones", "taylor", "brown", "williams", "wilson", "johnson", "davies", "robinson", "wright",
        "thompson", "evans", "walker", "white", "roberts", "green", "hall", "wood", "jackson", "clarke"]
STREETS = ["high st", "church rd", "mill ln", "station rd", "park ave", "victoria st", "green ln", "manor dr"]
POSTCODES = ["LS1 4AP", "LS2 7EW", "M1 1AE", "M4 5JD", "SW1A 1AA", "EC1A 1BB", "B1 1BB", "BS1 4DJ"]
CITIES = ["leeds", "leeds", "manchester", "manchester", "london", "london", "birmingham", "bristol"]


def _person(rng):
    k = rng.randrange(len(POSTCODES))
    return R(rng.choice(FIRST), rng.choice(LAST),
             f"{rng.randrange(1940, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
             f"{rng.randrange(1, 200)} {rng.choice(STREETS)}", POSTCODES[k], CITIES[k])


def _typo(rng, value):
    i = rng.randrange(len(value))
    return value[:i] + rng.choice("aeiourstn") + value[i + 1:]


def _noisy_copy(rng, p):
    first, last, dob, addr, pc, city = p.first_name, p.last_name, p.date_of_birth, p.address, p.postcode, p.city
    if rng.random() < 0.15:
        first = _typo(rng, first)
    if rng.random() < 0.1:
        last = _typo(rng, last)
    roll = rng.random()
    if roll < 0.05:
        dob = f"{dob[:5]}{dob[8:10]}-{dob[5:7]}"
    elif roll < 0.10:
        dob = f"{int(dob[:4]) + 1}{dob[4:]}"
    if rng.random() < 0.2:
        addr = None
    if rng.random() < 0.1:
        pc = None
    if rng.random() < 0.2:
        dob = None
    return R(first, last, dob, addr, pc, city)


def _synthetic(seed, n_people=400, n_matches=300, n_non=1500):
    """People; matched pairs with noise; unmatched pairs that share a surname or a postcode, as
    blocking would propose them."""
    rng = random.Random(seed)
    people = [_person(rng) for _ in range(n_people)]
    pairs = [(p, _noisy_copy(rng, p)) for p in rng.sample(people, n_matches)]
    non = []
    while len(non) < n_non:
        a, b = rng.sample(people, 2)
        if rng.random() < 0.5:
            b = R(b.first_name, a.last_name, b.date_of_birth, b.address, b.postcode, b.city)
        else:
            b = R(b.first_name, b.last_name, b.date_of_birth, b.address, a.postcode, a.city)
        non.append((a, b))
    candidates = pairs + non
    rng.shuffle(candidates)
    return people, candidates, n_matches / len(candidates)


def test_estimate_u_is_deterministic_per_seed():
    people, _, _ = _synthetic(1)
    u1 = estimate_u(people, 2000, seed=7)
    u2 = estimate_u(people, 2000, seed=7)
    assert u1 == u2 and u1.version == u2.version and u1.version.startswith("u-")
    assert estimate_u(people, 2000, seed=8) != u1
    # Random pairs of distinct people almost never agree exactly on a date of birth or an address.
    assert u1.u["date_of_birth"]["exact"] < 0.001
    assert u1.u["first_name"]["exact"] == pytest.approx(1 / len(FIRST), rel=0.35)
    assert u1.m == default_model().m
    assert estimate_u(people[:1], 100, seed=7) == default_model()


def test_em_recovers_m_above_u_deterministically():
    people, candidates, true_prior = _synthetic(2)
    u_model = estimate_u(people, 5000, seed=3)
    # Start EM from an uninformed m (every level equally likely) and a minority of matches.
    flat = {f: {lv: 1 / len(FIELD_LEVELS[f]) for lv in FIELD_LEVELS[f]} for f in FIELDS}
    start = u_model.with_params(m=flat, prior=0.1)
    model = estimate_m_em(candidates, start, iterations=30)
    assert model == estimate_m_em(candidates, start, iterations=30)  # deterministic
    assert model.is_monotone()
    for f in ("first_name", "last_name", "date_of_birth"):
        assert model.m[f]["exact"] > 0.6, f
        assert model.m[f]["exact"] > 10 * model.u[f]["exact"], f
        assert model.m[f]["different"] < model.u[f]["different"], f
    assert model.u == u_model.u  # u stays fixed
    assert model.prior == pytest.approx(true_prior, abs=0.05)
    assert model.version.startswith("em-")


def test_em_classifies_held_out_pairs():
    people, candidates, _ = _synthetic(4)
    model = estimate_m_em(candidates, estimate_u(people, 5000, seed=5), iterations=25)
    rng = random.Random(99)
    fresh = [_person(rng) for _ in range(200)]
    same = [model.weight(p, _noisy_copy(rng, p))[0] for p in fresh]
    diff = [model.weight(a, b)[0] for a, b in zip(fresh, fresh[1:])]
    cut = (model.review_threshold + model.link_threshold) / 2
    assert sum(w > cut for w in same) / len(same) > 0.9
    assert sum(w < cut for w in diff) / len(diff) > 0.98


def test_em_without_pairs_returns_the_model():
    model = default_model()
    assert estimate_m_em([], model, iterations=5) is model


def test_weight_call_is_fast():
    import time
    model = default_model()
    a = R("Jonathan", "Smith", "1985-03-07", "10 Downing Street", "SW1A 1AA", "London")
    b = R("Jonathon", "Smyth", "1985-07-03", "10 Downing St", "SW1A 1AA", "London")
    start = time.perf_counter()
    for _ in range(2000):
        model.weight(a, b)
    per_call = (time.perf_counter() - start) / 2000
    assert per_call < 200e-6  # generous: about 3 µs on a laptop


def test_frequency_adjustment_weighs_rare_values_up_and_common_ones_down():
    model = default_model()
    assert frequency_adjustment(model, "last_name", 0, 0) == 0.0  # nothing known yet: no adjustment
    rare = frequency_adjustment(model, "last_name", 1, 50_000)
    common = frequency_adjustment(model, "last_name", 2_000, 50_000)
    assert 0 < rare <= MAX_FREQUENCY_ADJUSTMENT and -MAX_FREQUENCY_ADJUSTMENT <= common < 0
    shares = [frequency_adjustment(model, "first_name", c, 10_000) for c in (1, 10, 100, 1_000, 10_000)]
    assert shares == sorted(shares, reverse=True)
    assert frequency_adjustment(model, "last_name", 10**6, 10**6) == -MAX_FREQUENCY_ADJUSTMENT  # bounded


def test_a_town_weighs_more_when_the_postcodes_do_not_imply_it():
    model = default_model()
    a = R("Ann", "Lee", None, None, "LS1 1AA", "Leeds")
    same_postcode = model.weight(a, a)
    no_postcode = model.weight(a, R("Ann", "Lee", None, None, None, "Leeds"))
    other_postcode = model.weight(a, R("Ann", "Lee", None, None, "LS9 9ZZ", "Leeds"))
    assert no_postcode[1]["city"] == other_postcode[1]["city"] > same_postcode[1]["city"] > 0
    # agreeing on the postcode as well never weighs less than the town alone
    assert same_postcode[0] > no_postcode[0] > other_postcode[0]
    assert model.is_monotone()


@settings(max_examples=2000, deadline=None)
@given(st.text(st.characters(max_codepoint=127), max_size=24))
def test_ascii_text_folds_as_any_text_does(value):
    # (ASCII text takes a short way: nothing to decompose, no combining marks, casefold is lower)
    from resolver.matching.canonical import _fold, _fold_any

    assert _fold(value) == _fold_any(value)
    assert _fold(value + "é") == _fold_any(value + "é")  # (and text that is not ASCII takes the long way)


@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), min_size=6, max_size=6))
def test_a_record_pickled_reads_back_the_same_without_being_canonicalized_again(values):
    import pickle
    from unittest import mock

    from resolver.matching import canonical

    record = AttributeRecord(*values)
    data = pickle.dumps([record, record], pickle.HIGHEST_PROTOCOL)
    with mock.patch.object(canonical, "canonical_address", side_effect=AssertionError("canonicalized again")):
        back, again = pickle.loads(data)
    assert back == record and hash(back) == hash(record) and again is back
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.first_name = "x"  # type: ignore[misc]
    # a pickle of the form records had before (the dataclass's slots state) still reads
    with mock.patch.object(AttributeRecord, "__reduce__", object.__reduce__):
        old = pickle.dumps(record, pickle.HIGHEST_PROTOCOL)
    assert b"_CanonicalRecord" not in old and pickle.loads(old) == record
