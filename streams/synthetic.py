"""Realistic synthetic multi-channel customer events, with ground truth.

``idres demo`` and the benchmarks generate a data set with this module, ingest it, and score the
engine's clustering against the real person behind every event (see ``resolver.measures``).

The output follows the raw channel-event contract: one compact JSON object per line, sorted by
``occurred_at`` (all timestamps in UTC, ``+00:00``)::

    {"event_id": "evt-004211337", "occurred_at": "2025-03-07T14:03:11+00:00", "channel": "web",
     "event_type": "login", "identifiers": {"email": "john.smith@gmail.com", "device_id": "..."}}

Generation is deterministic: every draw comes from one ``random.Random(config.seed)``; there is no
clock and no global random state, so the same configuration gives byte-identical output (for a given
Python version). It is also streaming and memory-light: people are generated household by household,
their serialized events are buffered in one bucket per day of the window, and when more than
``chunk_size`` events are buffered each bucket is appended to its own temporary file. At the end the
days are read back one at a time, sorted and emitted, so the output is globally sorted while memory
stays bounded by the chunk size, one day of events, and the sets that keep emails, phones and
handles unique.

The data set deliberately contains the traps a resolver meets in production, each with a named rate
in ``SyntheticConfig``: households sharing a landline and a family tablet, store kiosks used by many
people, placeholder values typed by staff, format noise, people changing email, anonymous sessions that
log in later, attribute-only events, malformed lines and re-sent duplicates.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import shutil
import tempfile
from bisect import bisect
from dataclasses import dataclass, fields
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Callable, Iterator, Optional

import orjson

__all__ = [
    "CHANNELS",
    "EVENT_TYPES",
    "PLACEHOLDER_EMAILS",
    "PLACEHOLDER_PHONES",
    "SyntheticConfig",
    "generate_lines",
    "write_dataset",
]

CHANNELS = ("web", "app", "email", "call_center", "store", "loyalty", "chat", "social")

EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "web": ("page_view", "login", "add_to_cart", "purchase"),
    "app": ("app_open", "login", "purchase"),
    "email": ("email_open", "email_click", "newsletter_signup"),
    "call_center": ("call", "case_opened", "case_resolved"),
    "store": ("store_purchase", "return"),
    "loyalty": ("enroll", "points_redeemed"),
    "chat": ("chat_started", "case_opened", "case_resolved"),
    "social": ("social_message",),
}

PLACEHOLDER_EMAILS = ("test@test.com", "noemail@noemail.com", "none@none.com", "na@na.com")
PLACEHOLDER_PHONES = ("0000000000", "1234567890", "9999999999", "000-000-0000")

DEFAULT_CHUNK_SIZE = 200_000
_dumps = orjson.dumps


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. All rates are probabilities in [0, 1].

    Size and time
        people: number of real persons (the ground-truth clusters).
        seed: seed of the single ``random.Random`` every draw comes from.
        start: beginning of the time window (ISO-8601; a value without timezone is taken as UTC).
        days: length of the window; no event occurs at or after ``start + days``.
        mean_events_per_person: target mean of the skewed (lognormal) number of valid events per
            person; most people have a handful, a few have dozens or hundreds. Approximate.

    People
        loyalty_rate (0.6): people holding a loyalty card ("LOY-0012345").
        second_email_rate (0.35): people with a second email address they use now and then.
        social_rate (0.3): people with a social handle.
        email_change_rate (0.10): people who switch to a new email address at some point of the
            window and never use the old one afterwards (their phone, and loyalty card if any,
            continue).

    Households
        household_rate (0.30): fraction of people living in 2-4 person households (same address,
            mostly the same last name, different first names and dates of birth).
        household_same_last_name_rate (0.85): household members sharing the first member's last name.
        household_landline_rate (0.7): multi-person households with a shared landline phone.
        landline_use_rate (0.5): call-centre, store and loyalty-enrolment events where a member of a
            household with a landline gives the landline instead of their mobile.
        household_tablet_rate (0.5): multi-person households with a shared family tablet.
        tablet_use_rate (0.4): app sessions a member of such a household runs on the family tablet
            (logged in with their own email).

    Traps
        kiosks (20): store kiosk / POS terminal device ids, each used by many different people.
        kiosk_rate (0.35): store events made at a kiosk (kiosk device_id plus the person's loyalty
            id or email).
        placeholder_rate (0.06): store and call-centre events where staff typed a placeholder email
            ("test@test.com") or phone ("0000000000") instead of the real one; 80% of them still
            carry another real identifier of the person.
        format_noise_rate (0.15): identifier and attribute values written in a non-canonical format
            (case, whitespace, gmail dots, "+tags", googlemail.com, phone punctuation, loyalty id
            spelling, name case). Doubled for values typed by staff, lowered for the email channel.
        dob_us_format_rate (0.15): dates of birth written "03/07/1985" (US month/day) instead of
            "1985-03-07".
        anonymous_login_rate (0.75): anonymous web sessions (device only) followed by a login on the
            same device, in the same session or days later; the rest stay anonymous.
        attributes_only_rate (0.02): store purchases with no identifier at all, only first name, last
            name, postcode and sometimes date of birth.
        open_case_rate (0.2): support cases that are never resolved (no ``case_resolved``).
        malformed_rate (0.005): extra deliberately bad lines, per valid event: truncated JSON,
            missing event_id, wrong types, or no identifiers and no attributes. Not in the truth.
        duplicate_rate (0.01): valid events re-sent: the identical line again, right after the
            original (same event_id, same occurred_at). The truth lists each event_id once.
    """

    people: int = 500
    seed: int = 7
    start: str = "2025-01-01T00:00:00+00:00"
    days: int = 365
    mean_events_per_person: float = 10.0
    # people
    loyalty_rate: float = 0.6
    second_email_rate: float = 0.35
    social_rate: float = 0.3
    email_change_rate: float = 0.10
    # households
    household_rate: float = 0.30
    household_same_last_name_rate: float = 0.85
    household_landline_rate: float = 0.7
    landline_use_rate: float = 0.5
    household_tablet_rate: float = 0.5
    tablet_use_rate: float = 0.4
    # traps
    kiosks: int = 20
    kiosk_rate: float = 0.35
    placeholder_rate: float = 0.06
    format_noise_rate: float = 0.15
    dob_us_format_rate: float = 0.15
    anonymous_login_rate: float = 0.75
    attributes_only_rate: float = 0.02
    open_case_rate: float = 0.2
    malformed_rate: float = 0.005
    duplicate_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.people < 1:
            raise ValueError("people must be >= 1")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if self.kiosks < 0:
            raise ValueError("kiosks must be >= 0")
        if not self.mean_events_per_person >= 1.0:
            raise ValueError("mean_events_per_person must be >= 1")
        for f in fields(self):
            if f.name.endswith("_rate"):
                value = getattr(self, f.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name} must be within [0, 1], got {value!r}")
        _parse_start(self.start)


def _parse_start(start: str) -> int:
    dt = datetime.fromisoformat(start)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


# --------------------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------------------

_FIRST_NAMES = tuple(
    """
James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan
Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Margaret
Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin
Amanda Brian Dorothy George Melissa Timothy Deborah Ronald Stephanie Edward Rebecca Jason Sharon
Jeffrey Laura Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley Jonathan Anna Stephen
Brenda Larry Pamela Justin Emma Scott Nicole Brandon Helen Benjamin Samantha Samuel Katherine Gregory
Christine Alexander Debra Frank Rachel Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria Jerry
Heather Tyler Diane Aaron Ruth Jose Julie Adam Olivia Nathan Joyce Henry Virginia Douglas Victoria
Zachary Kelly Peter Lauren Kyle Christina Ethan Joan Walter Evelyn Noah Judith Jeremy Megan Christian
Andrea Keith Cheryl Roger Hannah Terry Jacqueline Gerald Martha Harold Gloria Sean Teresa Austin Ann
Carl Sara Arthur Madison Lawrence Frances Dylan Kathryn Jesse Janice Jordan Jean Bryan Abigail Billy
Alice Joe Julia Bruce Judy Gabriel Sophia Logan Grace Albert Denise Willie Amber Alan Doris Juan
Marilyn Wayne Danielle Elijah Beverly Randy Isabella Roy Theresa Vincent Diana Ralph Natalie Eugene
Brittany Russell Charlotte Bobby Marie Mason Kayla Philip Alexis Louis Lori Wei Priya Mohammed Fatima
Hiroshi Yuki Carlos Sofia Luis Camila Diego Valentina Mateo Lucia Andre Aaliyah DeShawn Imani Omar Leila
""".split()
)

_LAST_NAMES = tuple(
    """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez
Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark
Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams
Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz
Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson
Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray
Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins
Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero
Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant
Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez
McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford
Olson Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer
Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels
Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold
Pierce Vazquez Hansen Peters Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong Hudson
Carroll Lane Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman Johnston Matthews Pena Richards
Contreras Willis Carpenter Lawrence Sandoval Guerrero George Chapman Rios Estrada Ortega Watkins
Greene Nunez Wheeler Valdez Harper Burke Larson Santiago Maldonado Morrison Franklin Carlson Austin
Dominguez Carr Lawson Jacobs O'Brien Lynch Singh Vega Bishop Montgomery Oliver Jensen Harvey Williamson
Gilbert Dean Sims Espinoza Howell Li Wong Reid Hanson Le McCoy Garrett Burton Fuller Wang Weber
Welch Rojas Lucas Marquez Fields Park Yang Little Banks Padilla Day Walsh Bowman Schultz Luna Fowler
Mejia Davidson Acosta Brewer May Holland Juarez Newman Pearson Curtis Cortez Douglas Schneider
Joseph Barrett Navarro Figueroa Keller Avila Wade Molina Stanley Hopkins Campos Barnett Bates
Chambers Caldwell Beck Lambert Miranda Byrd Craig Ayala Lowe Frazier Powers Neal Leonard Gregory
Carrillo Sutton Fleming Rhodes Shelton Schwartz Norris Jennings Watts Duran Walters Cohen McDaniel
Moran Parks Steele Vaughn Becker Holt DeLeon Barker Terry Hale Leon Hail Benson Haynes Horton
Miles Lyons Pham Graves Bush Thornton Wolfe Warner Cabrera McKinney Mann Zimmerman Dawson Lara
Fletcher Page McCarthy Love Robles Cervantes Solis Erickson Reeves Chang Klein Salinas Fuentes
Baldwin Daniel Simon Velasquez Hardy Higgins Aguirre Lin Cummings Chandler Sharp Barber Bowen
Ochoa Dennis Robbins Liu Ramsey Francis Griffith Paul Blair O'Connor Cardenas Pacheco Cross Calderon
Quinn Moss Swanson Chan Rivas Khan Rodgers Serrano Fitzgerald Rosales Stevenson Christensen Manning
Gill Curry McLaughlin Harmon McGee Gross Doyle Garner Newton Burgess Reese Walton Blake Trujillo
Adkins Brady Goodman Roman Webster Goodwin Fischer Huang Potter Delacruz Montoya Todd Wu Hines
Mullins Castaneda Malone Cannon Tate Mack Sherman Hubbard Hodges Zhang Guerra Wolf Valencia Saunders
Franco Rowe Gallagher Farmer Hammond Hampton Townsend Ingram Wise Gallegos Clarke Barton Schroeder
Maxwell Waters Logan Camacho Strickland Norman Person Colon Parsons Frank Harrington Glover Osborne
Buchanan Casey Floyd Patton Ibarra Ball Tyler Suarez Bowers Orozco Salas Cobb Gibbs Andrade Bauer
Conner Moody Escobar McGuire Lloyd Mueller Hartman French Kramer McBride Pope Lindsey Velazquez
Norton McCormick Sparks Flynn Yates Hogan Marsh Macias Villanueva Zamora Pratt Stokes Owen Ballard
Lang Brock Villarreal Charles Drake Barrera Cain Patrick Pineda Burnett Mercado Santana Shepherd
Bautista Ali Shaffer Lamb Trevino McKenzie Hess Beil Olsen Cochran Morton Nash Wilkins Petersen
Briggs Shah Roth Nicholson Holloway Lozano Flowers Rangel Hoover Arias Short Mora Valenzuela Bryan
Meyers Weiss Underwood Bass Greer Summers Houston Carson Morrow Clayton Whitaker Decker Yoder Collier
Zuniga Carey Wilcox Melendez Poole Roberson Larsen Conley Davenport Copeland Massey Lam Huff Rocha
Cameron Jefferson Hood Monroe Anthony Pittman Huynh Randall Singleton Kirk Combs Mathis Christian
Skinner Bradford Richard Galvan Wall Boone Kirby Wilkinson Bridges Bruce Atkinson Velez Meza Roy
Vincent York Hodge Villa Abbott Allison Tapia Gates Chase Sosa Sweeney Farrell Wyatt Dalton Horn
Barron Phelps Yu Dickerson Heath Foley Atkins Mathews Bonilla Acevedo Benitez Zavala Hensley Glenn
Cisneros Harrell Shields Rubio Huffman Choi Boyer Garrison Arroyo Bond Kane Hancock Callahan Dillon
Cline Wiggins Grimes Arellano Melton O'Neill Savage Ho Beltran Pitts Parrish Ponce Rich Booth Koch
Golden Ware Brennan McDowell Marks Cantu Humphrey Baxter Sawyer Clay Tanner Hutchinson Kaur Berg
Wiley Gilmore Russo Villegas Hobbs Keith Wilkerson Ahmed Beard McClain Montes Mata Rosario Vang
Walter Henson O'Donnell Mitchell-Brown Garcia-Lopez
""".split()
)

_STREETS = tuple(
    """
Maple Oak Pine Cedar Elm Washington Lake Hill Park Main Walnut Spruce Sunset Highland Lincoln
Jefferson Madison Franklin Jackson Adams Chestnut Willow Birch Ridge River Forest Meadow Church Mill
Spring Center Union Prospect Cherry Valley Greenwood Lakeview Hillcrest Woodland Fairview Broad
Market Harbor Bayview Mountain Summit Orchard Magnolia Dogwood Sycamore Hickory Poplar Laurel
""".split()
)
_STREET_SUFFIXES = (("St", "Street"), ("Ave", "Avenue"), ("Rd", "Road"), ("Blvd", "Boulevard"),
                    ("Ln", "Lane"), ("Dr", "Drive"), ("Ct", "Court"), ("Way", "Way"), ("Pl", "Place"))

# city, state, ZIP prefix, area codes
_CITIES = (
    ("New York", "NY", "100", ("212", "646", "917")),
    ("Brooklyn", "NY", "112", ("718", "347", "929")),
    ("Los Angeles", "CA", "900", ("213", "310", "323")),
    ("Chicago", "IL", "606", ("312", "773", "872")),
    ("Houston", "TX", "770", ("713", "832", "281")),
    ("Phoenix", "AZ", "850", ("602", "480", "623")),
    ("Philadelphia", "PA", "191", ("215", "267")),
    ("San Antonio", "TX", "782", ("210", "726")),
    ("San Diego", "CA", "921", ("619", "858")),
    ("Dallas", "TX", "752", ("214", "469", "972")),
    ("Austin", "TX", "787", ("512", "737")),
    ("San Francisco", "CA", "941", ("415", "628")),
    ("Seattle", "WA", "981", ("206",)),
    ("Denver", "CO", "802", ("303", "720")),
    ("Boston", "MA", "021", ("617", "857")),
    ("Atlanta", "GA", "303", ("404", "678", "470")),
    ("Miami", "FL", "331", ("305", "786")),
    ("Portland", "OR", "972", ("503", "971")),
    ("Minneapolis", "MN", "554", ("612",)),
    ("Nashville", "TN", "372", ("615", "629")),
    ("Columbus", "OH", "432", ("614",)),
    ("Charlotte", "NC", "282", ("704", "980")),
    ("Detroit", "MI", "482", ("313",)),
    ("Las Vegas", "NV", "891", ("702", "725")),
    ("Baltimore", "MD", "212", ("410", "443")),
    ("Milwaukee", "WI", "532", ("414",)),
    ("Albuquerque", "NM", "871", ("505",)),
    ("Tucson", "AZ", "857", ("520",)),
    ("Sacramento", "CA", "958", ("916",)),
    ("Kansas City", "MO", "641", ("816",)),
    ("Raleigh", "NC", "276", ("919", "984")),
    ("Omaha", "NE", "681", ("402",)),
    ("Cleveland", "OH", "441", ("216",)),
    ("Tampa", "FL", "336", ("813",)),
    ("Pittsburgh", "PA", "152", ("412",)),
    ("St. Louis", "MO", "631", ("314",)),
    ("Cincinnati", "OH", "452", ("513",)),
    ("Orlando", "FL", "328", ("407", "321")),
    ("Salt Lake City", "UT", "841", ("801", "385")),
    ("Indianapolis", "IN", "462", ("317",)),
    ("New Orleans", "LA", "701", ("504",)),
    ("Richmond", "VA", "232", ("804",)),
    ("Buffalo", "NY", "142", ("716",)),
    ("Madison", "WI", "537", ("608",)),
    ("Boise", "ID", "837", ("208",)),
    ("Honolulu", "HI", "968", ("808",)),
    ("Anchorage", "AK", "995", ("907",)),
)
# Bigger cities get more people.
_CITY_CUM = tuple(
    float(x)
    for x in itertools.accumulate(
        [9, 6, 8, 6, 5, 4, 4, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2] + [1.5] * (len(_CITIES) - 18)
    )
)

_WEBMAIL = (("gmail.com", 40), ("yahoo.com", 17), ("outlook.com", 13), ("hotmail.com", 8),
            ("icloud.com", 7), ("aol.com", 2))
_COMPANY_DOMAINS = ("contoso.com", "fabrikam.com", "northwindtraders.com", "adventure-works.com",
                    "tailspintoys.com", "wingtiptoys.com", "litwareinc.com", "proseware.com",
                    "woodgrovebank.com", "lucernepublishing.com", "alpineskihouse.com", "fourthcoffee.com")
_DOMAINS = tuple(d for d, _ in _WEBMAIL) + ("company",)
_DOMAIN_CUM = tuple(itertools.accumulate([w for _, w in _WEBMAIL] + [13]))

_EMAIL_TAGS = ("shop", "news", "promo", "deals", "orders", "store", "spam", "amzn", "web")
_PAGES = ("/", "/home", "/deals", "/new-arrivals", "/women", "/men", "/kids", "/home-garden",
          "/electronics", "/search", "/product", "/cart", "/account", "/help", "/stores")
_CASE_REASONS = ("late_delivery", "damaged_item", "billing", "refund", "account_access", "product_question",
                 "loyalty_points", "wrong_item")
_SOCIAL_PLATFORMS = ("twitter", "instagram", "facebook")

# Format templates (area, exchange, line). The first of each channel's list is its usual format.
_PHONE_FORMATS = ("+1 {0}-{1}-{2}", "({0}) {1}-{2}", "{0}.{1}.{2}", "{0}{1}{2}", "1-{0}-{1}-{2}",
                  "{0}-{1}-{2}", "+1{0}{1}{2}", "+1 ({0}) {1}-{2}", "{0} {1} {2}")
_PHONE_DEFAULT = {"web": "+1{0}{1}{2}", "app": "+1{0}{1}{2}", "email": "{0}-{1}-{2}",
                  "call_center": "({0}) {1}-{2}", "store": "{0}{1}{2}", "loyalty": "{0}-{1}-{2}",
                  "chat": "+1 {0}-{1}-{2}", "social": "{0}-{1}-{2}"}
_LOYALTY_FORMATS = ("loy {0}", "{0}", "LOY{0}", "loy-{0}", "LOY {0}", "Loy-{0}")

# Hour of day (UTC) weights: quiet nights, busy days and evenings.
_HOUR_CUM = tuple(itertools.accumulate(
    [1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.5, 6.0,
     5.5, 4.0, 2.5, 1.5]))

# Relative channel weights; each person multiplies them by personal factors.
_CHANNEL_BASE = (3.0, 2.0, 2.5, 1.0, 2.0, 1.0, 0.7, 0.8)
_HOUR_TOTAL = _HOUR_CUM[-1]
# Statistics counted per emitted event.
_ANON = ("anonymous_events",)
_PURCHASE = ("purchases",)
_ATTR_ONLY_PURCHASE = ("purchases", "attribute_only_events")
_PLACEHOLDER = ("placeholder_events",)
_KIOSK = ("kiosk_events",)
_CASE = ("support_cases",)
_RESOLVED = ("resolved_cases",)
_N_PAGES = len(_PAGES)
_HH_MM = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SS_TZ = tuple(f"{s:02d}+00:00" for s in range(60))
_STAFF_CHANNELS = frozenset({"call_center", "store"})

# Permutation multipliers (coprime with the moduli) that turn counters into unique, scattered ids.
_ID_MODULUS = 1_000_000_000
_ID_MULT = 387_420_489  # 3**18
_LOYALTY_MODULUS = 10_000_000
_LOYALTY_MULT = 7_919
# Correction so that the realised mean number of events per person matches the target: sessions
# emit several events, so the last session of a person overshoots its drawn budget.
_BUDGET_SHIFT = 0.8
_SIGMA = 1.0


# --------------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _letters(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalpha())


class _Person:
    __slots__ = (
        "pid", "pid_b", "first", "last", "dob", "address", "street_no", "street", "suffix", "postcode",
        "city", "email", "alt_email", "new_email", "change_at", "mobile", "landline", "loyalty",
        "devices", "tablet", "social", "cum", "t0", "t1", "enroll_pending",
    )


class _Builder:
    """Generates people and their events; yields sorted records ``key \\t pid \\t eid \\t line``."""

    def __init__(self, config: SyntheticConfig):
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.rnd = self.rng.random
        self.base = _parse_start(config.start)
        self.end = config.days * 86_400
        base_day = self.base // 86_400
        self.base_day = base_day
        self.day_strs = [
            datetime.fromtimestamp((base_day + d) * 86_400, timezone.utc).strftime("%Y-%m-%dT")
            for d in range(config.days + 2)
        ]
        self.serial = 0
        self.id_offset = self._rr(_ID_MODULUS)
        self.loyalty_offset = self._rr(_LOYALTY_MODULUS)
        self.kiosk_ids = [self._uuid() for _ in range(config.kiosks)]
        self.used_emails: set[str] = set()
        self.used_phones: set[str] = set()
        self.used_handles: set[str] = set()
        self.case_serial = 0
        self.attempts = 0
        # Records are bucketed by day of the window; a bucket is sorted on its own at the end.
        self.buckets: list[list[bytes]] = [[] for _ in range(config.days)]
        self.spilled_serial = 0  # serial at the last spill: serial - spilled_serial ~ buffered events
        self.dup_rate = config.duplicate_rate
        self.dup_or_bad_rate = config.duplicate_rate + config.malformed_rate
        mu_target = max(config.mean_events_per_person - _BUDGET_SHIFT, 0.6)
        self.mu = math.log(mu_target) - _SIGMA * _SIGMA / 2
        self.multi_household_p = config.household_rate / (3.0 - 2.0 * config.household_rate)
        self.noise = config.format_noise_rate
        self.episodes = (self._ep_web, self._ep_app, self._ep_email, self._ep_call_center, self._ep_store,
                         self._ep_loyalty, self._ep_chat, self._ep_social)
        self.stats = {
            "people": 0,
            "households": 0,
            "multi_person_households": 0,
            "people_in_multi_person_households": 0,
            "shared_landlines": 0,
            "shared_tablets": 0,
            "kiosks": config.kiosks,
            "loyalty_members": 0,
            "email_changes": 0,
            "events": 0,
            "duplicates": 0,
            "malformed": 0,
            "anonymous_events": 0,
            "kiosk_events": 0,
            "placeholder_events": 0,
            "attribute_only_events": 0,
            "purchases": 0,
            "support_cases": 0,
            "resolved_cases": 0,
        }

    # -- small helpers -----------------------------------------------------------------------------
    def _rr(self, a: int, b: Optional[int] = None) -> int:
        """Uniform integer in [0, a) or [a, b) (one draw of ``random()``)."""
        if b is None:
            return int(self.rnd() * a)
        return a + int(self.rnd() * (b - a))

    def _choice(self, seq):
        return seq[int(self.rnd() * len(seq))]

    def _uuid(self) -> str:
        h = "%032x" % self.rng.getrandbits(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    # -- people ------------------------------------------------------------------------------------
    def _households(self) -> Iterator[list[_Person]]:
        cfg, rng, stats = self.cfg, self.rng, self.stats
        remaining = cfg.people
        index = 0
        while remaining > 0:
            size = 1
            if remaining >= 2 and rng.random() < self.multi_household_p:
                size = min(remaining, rng.randint(2, 4))
            remaining -= size
            stats["households"] += 1
            members = self._household(index, size)
            index += size
            yield members

    def _household(self, index: int, size: int) -> list[_Person]:
        cfg, rng, stats = self.cfg, self.rng, self.stats
        city_i = bisect(_CITY_CUM, rng.random() * _CITY_CUM[-1])
        city, _state, zip3, area_codes = _CITIES[city_i]
        postcode = f"{zip3}{self._rr(100):02d}"
        street_no = str(self._rr(1, 9900))
        street = self._choice(_STREETS)
        suffix = self._choice(_STREET_SUFFIXES)
        family_last = self._choice(_LAST_NAMES)
        landline = tablet = None
        if size > 1:
            stats["multi_person_households"] += 1
            stats["people_in_multi_person_households"] += size
            if rng.random() < cfg.household_landline_rate:
                landline = self._phone_number(area_codes)
                stats["shared_landlines"] += 1
            if rng.random() < cfg.household_tablet_rate:
                tablet = self._uuid()
                stats["shared_tablets"] += 1
        elif rng.random() < 0.12:
            landline = self._phone_number(area_codes)
        members = []
        firsts: set[str] = set()
        for k in range(size):
            p = _Person()
            p.pid = f"person-{index + k + 1:07d}"
            p.pid_b = p.pid.encode()
            first = self._choice(_FIRST_NAMES)
            while first in firsts:
                first = self._choice(_FIRST_NAMES)
            firsts.add(first)
            p.first = first
            if k == 0 or rng.random() < cfg.household_same_last_name_rate:
                p.last = family_last
            else:
                p.last = self._choice(_LAST_NAMES)
            p.dob = date.fromordinal(date(1940, 1, 1).toordinal() + self._rr(24_000))
            p.street_no, p.street, p.suffix = street_no, street, suffix
            p.address = f"{street_no} {street} {suffix[0]}"
            p.postcode = postcode
            p.city = city
            self._person_identity(p, area_codes)
            p.landline = landline
            p.tablet = tablet
            members.append(p)
        return members

    def _person_identity(self, p: _Person, area_codes: tuple[str, ...]) -> None:
        cfg, rng, stats = self.cfg, self.rng, self.stats
        stats["people"] += 1
        p.email = self._new_email(p)
        p.alt_email = self._new_email(p) if rng.random() < cfg.second_email_rate else None
        p.mobile = self._phone_number(area_codes)
        p.loyalty = None
        p.enroll_pending = False
        if rng.random() < cfg.loyalty_rate:
            stats["loyalty_members"] += 1
            n = (stats["people"] * _LOYALTY_MULT + self.loyalty_offset) % _LOYALTY_MODULUS
            p.loyalty = f"{n:07d}"
            p.enroll_pending = rng.random() < 0.5  # the others enrolled before the window
        p.devices = [self._uuid() for _ in range(1 + (rng.random() < 0.45) + (rng.random() < 0.2))]
        p.social = self._new_handle(p) if rng.random() < cfg.social_rate else None
        # Active sub-window: most people span the whole window, some start or stop in the middle.
        end = self.end
        if rng.random() < 0.3 and end > 60 * 86_400:
            length = self._rr(30 * 86_400, end)
            p.t0 = self._rr(0, end - length + 1)
            p.t1 = p.t0 + length
        else:
            p.t0, p.t1 = 0, end
        p.new_email = p.change_at = None
        if rng.random() < cfg.email_change_rate:
            stats["email_changes"] += 1
            p.new_email = self._new_email(p)
            span = p.t1 - p.t0
            p.change_at = p.t0 + int(span * (0.2 + 0.6 * rng.random()))
        rnd, log = self.rnd, math.log
        weights = [b * (0.1 - log(1.0 - rnd())) for b in _CHANNEL_BASE]
        if p.loyalty is None:
            weights[5] = 0.0
        if p.social is None:
            weights[7] = 0.0
        acc, cum = 0.0, []
        for w in weights:
            acc += w
            cum.append(acc)
        p.cum = cum

    def _phone_number(self, area_codes: tuple[str, ...]) -> str:
        rng = self.rng
        while True:
            area = area_codes[self._rr(len(area_codes))]
            if rng.random() < 0.05:
                exchange, line = "555", f"01{self._rr(100):02d}"  # fictional 555-01xx range
            else:
                e = self._rr(200, 1000)
                if e % 100 == 11 or e == 555:
                    continue
                exchange, line = str(e), f"{self._rr(10_000):04d}"
            number = area + exchange + line
            if number not in self.used_phones:
                self.used_phones.add(number)
                return number

    def _new_email(self, p: _Person) -> tuple[str, str]:
        rng = self.rng
        first, last = _letters(p.first), _letters(p.last)
        kind = bisect(_DOMAIN_CUM, rng.random() * _DOMAIN_CUM[-1])
        if _DOMAINS[kind] == "company":
            domain = self._choice(_COMPANY_DOMAINS)
            local = f"{first}.{last}" if rng.random() < 0.6 else f"{first[0]}{last}"
        else:
            domain = _DOMAINS[kind]
            yy = p.dob.year % 100
            r = self._rr(9)
            local = (f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}_{last}",
                     f"{first}.{last}{yy:02d}", f"{first}{last}{self._rr(1, 999)}", f"{last}.{first}",
                     f"{first}{yy:02d}", f"{first}.{last[0]}{self._rr(10, 99)}")[r]
        while True:
            canonical = local.replace(".", "") + "@" + domain if domain == "gmail.com" else local + "@" + domain
            if canonical not in self.used_emails:
                self.used_emails.add(canonical)
                return local, domain
            local = f"{local}{self._rr(1, 99)}"

    def _new_handle(self, p: _Person) -> str:
        first, last = _letters(p.first), _letters(p.last)
        handle = (f"{first}{last}", f"{first}_{last}", f"{first[0]}{last}", f"the{first}{last[0]}")[self._rr(4)]
        while handle in self.used_handles:
            handle = f"{handle}{self._rr(1, 100)}"
        self.used_handles.add(handle)
        return "@" + handle

    # -- value rendering (format noise) ------------------------------------------------------------
    def _email(self, p: _Person, t: int, channel: str) -> str:
        rng = self.rng
        local, domain = p.new_email if p.change_at is not None and t >= p.change_at else p.email
        if p.alt_email is not None and rng.random() < 0.25:
            local, domain = p.alt_email
        noise = self.noise
        if channel in _STAFF_CHANNELS:
            noise = min(1.0, noise * 2)
        elif channel == "email":
            noise *= 0.3
        if rng.random() >= noise:
            return f"{local}@{domain}"
        r = rng.random()
        if domain == "gmail.com" and r < 0.6:
            r2 = rng.random()
            if r2 < 0.4:
                if "." in local:
                    local = local.replace(".", "")
                else:
                    i = self._rr(1, len(local)) if len(local) > 1 else 1
                    local = local[:i] + "." + local[i:]
            elif r2 < 0.75:
                local = f"{local}+{self._choice(_EMAIL_TAGS)}"
            else:
                domain = "googlemail.com"
            return f"{local}@{domain}"
        r = rng.random()
        if r < 0.3:
            return f"{local}@{domain}".upper()
        if r < 0.6:
            return f"{local.capitalize()}@{domain.capitalize()}"
        if r < 0.8:
            return f" {local}@{domain} "
        return f"{local}@{domain}  "

    def _phone(self, p: _Person, channel: str, allow_landline: bool) -> str:
        rng = self.rng
        number = p.mobile
        if allow_landline and p.landline is not None and rng.random() < self.cfg.landline_use_rate:
            number = p.landline
        noise = self.noise * 2 if channel in _STAFF_CHANNELS else self.noise
        if rng.random() < noise:
            fmt = _PHONE_FORMATS[self._rr(len(_PHONE_FORMATS))]
        else:
            fmt = _PHONE_DEFAULT[channel]
        return fmt.format(number[:3], number[3:6], number[6:])

    def _loyalty(self, p: _Person, channel: str) -> str:
        rng = self.rng
        noise = self.noise * 2 if channel in _STAFF_CHANNELS else self.noise
        if rng.random() < noise:
            return _LOYALTY_FORMATS[self._rr(len(_LOYALTY_FORMATS))].format(p.loyalty)
        return "LOY-" + p.loyalty

    def _name(self, value: str) -> str:
        rng = self.rng
        if rng.random() >= self.noise:
            return value
        r = rng.random()
        if r < 0.4:
            return value.upper()
        if r < 0.8:
            return value.lower()
        return f" {value} "

    def _dob(self, p: _Person) -> str:
        d = p.dob
        if self.rng.random() < self.cfg.dob_us_format_rate:
            return f"{d.month:02d}/{d.day:02d}/{d.year}"
        return d.isoformat()

    def _address(self, p: _Person) -> str:
        rng = self.rng
        if rng.random() >= self.noise:
            return p.address
        r = rng.random()
        if r < 0.4:
            return f"{p.street_no} {p.street} {p.suffix[1]}"
        if r < 0.7:
            return p.address.upper()
        return f"{p.street_no} {p.street.lower()} {p.suffix[0].lower()}."

    def _names(self, p: _Person) -> dict:
        return {"first_name": self._name(p.first), "last_name": self._name(p.last)}

    def _full_attributes(self, p: _Person) -> dict:
        return {
            "first_name": self._name(p.first),
            "last_name": self._name(p.last),
            "date_of_birth": self._dob(p),
            "address": self._address(p),
            "postcode": p.postcode,
            "city": p.city,
        }

    def _shipping(self, p: _Person) -> dict:
        return {
            "first_name": self._name(p.first),
            "last_name": self._name(p.last),
            "address": self._address(p),
            "postcode": p.postcode,
            "city": p.city,
        }

    def _placeholder(self, p: _Person, t: int, channel: str, prefer_phone: float) -> dict:
        """Identifiers of an event where staff typed a placeholder instead of the real value."""
        rng = self.rng
        if rng.random() < prefer_phone:
            ids = {"phone": PLACEHOLDER_PHONES[self._rr(len(PLACEHOLDER_PHONES))]}
        else:
            ids = {"email": PLACEHOLDER_EMAILS[self._rr(len(PLACEHOLDER_EMAILS))]}
        if rng.random() < 0.8:
            if p.loyalty is not None and rng.random() < 0.7:
                ids["loyalty_id"] = self._loyalty(p, channel)
            elif "email" in ids:
                ids["phone"] = self._phone(p, channel, True)
            else:
                ids["email"] = self._email(p, t, channel)
        return ids

    def _order(self, sku: Optional[str] = None) -> dict:
        rng = self.rng
        amount = round(max(1.0, rng.lognormvariate(3.6, 0.8)), 2)
        return {
            "amount": amount,
            "currency": "USD",
            "order_id": "ord-%010x" % rng.getrandbits(40),
            "sku": sku or f"SKU-{self._rr(10_000, 100_000)}",
            "quantity": 1 + (rng.random() < 0.2) + (rng.random() < 0.05),
        }

    def _csat(self) -> int:
        return 1 + bisect((0.08, 0.15, 0.3, 0.6), self.rng.random())

    # -- emission ----------------------------------------------------------------------------------
    def _emit(self, t: int, p: _Person, channel: str, etype: str, ids: dict,
              attrs: Optional[dict] = None, payload: Optional[dict] = None, count: tuple[str, ...] = ()) -> None:
        """Buffers one valid event (maybe followed by a duplicate or a malformed variant).

        ``count`` names statistics to increment when the event falls inside the window.
        """
        self.attempts += 1
        if t >= self.end:
            return  # beyond the window
        if count:
            stats = self.stats
            for key in count:
                stats[key] += 1
        serial = self.serial
        self.serial = serial + 1
        eid = "evt-%09d" % ((serial * _ID_MULT + self.id_offset) % _ID_MODULUS)
        d, s = divmod(self.base + t, 86_400)
        ev = {"event_id": eid, "occurred_at": self.day_strs[d - self.base_day] + _HH_MM[s // 60] + _SS_TZ[s % 60],
              "channel": channel, "event_type": etype, "identifiers": ids}
        if attrs:
            ev["attributes"] = attrs
        if payload:
            ev["payload"] = payload
        line = _dumps(ev)
        bucket = self.buckets[t // 86_400]
        bucket.append(b"%010d%010d0\t%s\t%s\t%s" % (t, serial, p.pid_b, eid.encode(), line))
        r = self.rnd()
        if r < self.dup_or_bad_rate:
            if r < self.dup_rate:  # re-sent: same line right after the original, no truth row
                bucket.append(b"%010d%010d1\t%s\t\t%s" % (t, serial, p.pid_b, line))
                self.stats["duplicates"] += 1
            else:
                self._malformed(t, ev)

    def _malformed(self, t: int, ev: dict) -> None:
        serial = self.serial
        self.serial = serial + 1
        bad = dict(ev)
        bad["event_id"] = "evt-%09d" % ((serial * _ID_MULT + self.id_offset) % _ID_MODULUS)
        kind = self._rr(6)
        if kind == 0:  # truncated line: not JSON at all
            full = orjson.dumps(bad)
            line = full[: self._rr(8, len(full) - 1)]
        else:
            if kind == 1:
                del bad["event_id"]
            elif kind == 2:
                bad["identifiers"] = self._choice(("abc", "email=unknown", ""))
            elif kind == 3:
                bad["occurred_at"] = self._choice((12345, 20250101, 0))
            elif kind == 4:
                bad["occurred_at"] = self._choice(("not-a-date", "yesterday", "2025-13-45T99:99:99"))
            else:
                bad["identifiers"] = {}
                bad.pop("attributes", None)
            line = orjson.dumps(bad)
        self.buckets[t // 86_400].append(b"%010d%010d0\t\t\t%s" % (t, serial, line))
        self.stats["malformed"] += 1

    # -- episodes (one customer interaction, possibly several events) ------------------------------
    def _when(self, p: _Person) -> int:
        """Start of an interaction: a random day of the person's active span, a busy hour of it."""
        rnd = self.rnd
        t = p.t0 + int(rnd() * (p.t1 - p.t0))
        t = t - t % 86_400 + 3600 * bisect(_HOUR_CUM, rnd() * _HOUR_TOTAL) + int(rnd() * 3600)
        return t if t >= 0 else 0

    def _ep_web(self, p: _Person, t: int) -> None:
        rng, emit = self.rng, self._emit
        dev = p.devices[self._rr(len(p.devices))]
        k = 1 + int(-math.log(1.0 - rng.random()) / 0.9)
        rnd = self.rnd
        ids = {"device_id": dev}
        for _ in range(k):
            emit(t, p, "web", "page_view", ids, None, {"page": _PAGES[int(rnd() * _N_PAGES)]}, _ANON)
            t += 5 + int(rnd() * 295)
        if rng.random() >= self.cfg.anonymous_login_rate:
            return  # stays anonymous
        if rng.random() < 0.3:
            t += self._rr(3600, 14 * 86_400)  # comes back later on the same device
        email = self._email(p, t, "web")
        emit(t, p, "web", "login", {"email": email, "device_id": dev})
        if rng.random() < 0.45:
            t += self._rr(20, 900)
            sku = f"SKU-{self._rr(10_000, 100_000)}"
            emit(t, p, "web", "add_to_cart", {"email": email, "device_id": dev}, None, {"sku": sku})
            if rng.random() < 0.6:
                t += self._rr(30, 1800)
                ids = {"email": email, "device_id": dev}
                if rng.random() < 0.25:
                    ids["phone"] = self._phone(p, "web", False)
                attrs = self._shipping(p) if rng.random() < 0.4 else None
                emit(t, p, "web", "purchase", ids, attrs, self._order(sku), _PURCHASE)

    def _ep_app(self, p: _Person, t: int) -> None:
        rng, emit = self.rng, self._emit
        on_tablet = p.tablet is not None and rng.random() < self.cfg.tablet_use_rate
        dev = p.tablet if on_tablet else p.devices[self._rr(len(p.devices))]
        emit(t, p, "app", "app_open", {"device_id": dev}, None, None, _ANON)
        if rng.random() < (0.9 if on_tablet else 0.6):
            t += self._rr(3, 120)
            email = self._email(p, t, "app")
            emit(t, p, "app", "login", {"email": email, "device_id": dev})
            if rng.random() < 0.3:
                t += self._rr(60, 1800)
                emit(t, p, "app", "purchase", {"email": email, "device_id": dev}, None, self._order(), _PURCHASE)

    def _ep_email(self, p: _Person, t: int) -> None:
        rng, emit = self.rng, self._emit
        email = self._email(p, t, "email")
        if rng.random() < 0.06:
            attrs = {"first_name": self._name(p.first)} if rng.random() < 0.5 else None
            emit(t, p, "email", "newsletter_signup", {"email": email}, attrs, {"list": "weekly"})
            return
        campaign = f"cmp-{t // (7 * 86_400):03d}-{self._rr(4)}"
        emit(t, p, "email", "email_open", {"email": email}, None, {"campaign_id": campaign})
        if rng.random() < 0.35:
            emit(t + self._rr(2, 600), p, "email", "email_click", {"email": email}, None,
                 {"campaign_id": campaign, "url": _PAGES[self._rr(len(_PAGES))]})

    def _new_case(self) -> str:
        self.case_serial += 1
        return f"case-{self.case_serial:07d}"

    def _ep_call_center(self, p: _Person, t: int) -> None:
        rng, emit, cfg = self.rng, self._emit, self.cfg
        count: tuple[str, ...] = ()
        if rng.random() < cfg.placeholder_rate:
            ids = self._placeholder(p, t, "call_center", 0.75)
            count = _PLACEHOLDER
        else:
            ids = {"phone": self._phone(p, "call_center", True)}
            if rng.random() < 0.2:
                ids["email"] = self._email(p, t, "call_center")
            elif p.loyalty is not None and rng.random() < 0.2:
                ids["loyalty_id"] = self._loyalty(p, "call_center")
        attrs = None
        if rng.random() < 0.5:
            attrs = self._names(p)
            if rng.random() < 0.3:
                attrs["date_of_birth"] = self._dob(p)
        emit(t, p, "call_center", "call", ids, attrs, {"duration_s": self._rr(30, 1800)}, count)
        if rng.random() < 0.45:
            case_id = self._new_case()
            t += self._rr(60, 900)
            emit(t, p, "call_center", "case_opened", ids, attrs,
                 {"case_id": case_id, "reason": _CASE_REASONS[self._rr(len(_CASE_REASONS))]}, count + _CASE)
            if rng.random() >= cfg.open_case_rate:
                t += self._rr(600, 10 * 86_400)
                if rng.random() < 0.6:
                    rids = {"phone": self._phone(p, "call_center", True)}
                else:
                    rids = {"email": self._email(p, t, "call_center")}
                emit(t, p, "call_center", "case_resolved", rids, None, {"case_id": case_id, "csat": self._csat()},
                     _RESOLVED)

    def _ep_store(self, p: _Person, t: int) -> None:
        rng, emit, cfg = self.rng, self._emit, self.cfg
        attrs = None
        kiosk = None
        count = _PURCHASE
        if rng.random() < cfg.attributes_only_rate:
            ids: dict = {}
            attrs = {"first_name": self._name(p.first), "last_name": self._name(p.last), "postcode": p.postcode}
            if rng.random() < 0.5:
                attrs["date_of_birth"] = self._dob(p)
            count = _ATTR_ONLY_PURCHASE
        else:
            if self.kiosk_ids and rng.random() < cfg.kiosk_rate:
                kiosk = self.kiosk_ids[self._rr(len(self.kiosk_ids))]
            if rng.random() < cfg.placeholder_rate:
                ids = self._placeholder(p, t, "store", 0.4)
                count = count + _PLACEHOLDER
            else:
                ids = {}
                if p.loyalty is not None and rng.random() < 0.65:
                    ids["loyalty_id"] = self._loyalty(p, "store")
                elif kiosk is not None or rng.random() < 0.5:
                    ids["email"] = self._email(p, t, "store")
                else:
                    ids["phone"] = self._phone(p, "store", True)
                if kiosk is None and rng.random() < 0.1:
                    ids["phone"] = self._phone(p, "store", True)
            if kiosk is not None:
                ids["device_id"] = kiosk
                count = count + _KIOSK
            if rng.random() < 0.1:
                attrs = self._names(p)
        order = self._order()
        order["store_id"] = f"store-{int(p.postcode) % 97:03d}"
        emit(t, p, "store", "store_purchase", ids, attrs, order, count)
        if rng.random() < 0.08 and ids:
            t += self._rr(86_400, 30 * 86_400)
            if p.loyalty is not None and rng.random() < 0.7:
                rids = {"loyalty_id": self._loyalty(p, "store")}
            else:
                rids = {"phone": self._phone(p, "store", True)}
            refund = round(order["amount"] * (1.0 if rng.random() < 0.7 else rng.uniform(0.2, 0.9)), 2)
            emit(t, p, "store", "return", rids, None, {"amount": max(refund, 0.01), "currency": "USD",
                                                      "order_id": order["order_id"], "store_id": order["store_id"]})

    def _ep_loyalty(self, p: _Person, t: int) -> None:
        rng, emit = self.rng, self._emit
        if p.enroll_pending:
            p.enroll_pending = False
            ids = {"loyalty_id": self._loyalty(p, "loyalty"), "email": self._email(p, t, "loyalty"),
                   "phone": self._phone(p, "loyalty", True)}
            emit(t, p, "loyalty", "enroll", ids, self._full_attributes(p), {"tier": "basic"})
            return
        ids = {"loyalty_id": self._loyalty(p, "loyalty")}
        if rng.random() < 0.2:
            ids["email"] = self._email(p, t, "loyalty")
        emit(t, p, "loyalty", "points_redeemed", ids, None, {"points": 100 * self._rr(1, 50)})

    def _ep_chat(self, p: _Person, t: int) -> None:
        rng, emit, cfg = self.rng, self._emit, self.cfg
        r = rng.random()
        if r < 0.6:
            ids = {"email": self._email(p, t, "chat")}
        elif r < 0.8:
            ids = {"device_id": p.devices[self._rr(len(p.devices))]}
        else:
            ids = {"email": self._email(p, t, "chat"), "device_id": p.devices[self._rr(len(p.devices))]}
        attrs = {"first_name": self._name(p.first)} if rng.random() < 0.3 else None
        emit(t, p, "chat", "chat_started", ids, attrs, None)
        if rng.random() < 0.5:
            case_id = self._new_case()
            t += self._rr(30, 600)
            emit(t, p, "chat", "case_opened", ids, None,
                 {"case_id": case_id, "reason": _CASE_REASONS[self._rr(len(_CASE_REASONS))]}, _CASE)
            if rng.random() >= cfg.open_case_rate:
                t += self._rr(300, 5 * 86_400)
                emit(t, p, "chat", "case_resolved", {"email": self._email(p, t, "chat")}, None,
                     {"case_id": case_id, "csat": self._csat()}, _RESOLVED)

    def _ep_social(self, p: _Person, t: int) -> None:
        rng = self.rng
        handle = p.social
        if rng.random() < self.noise:
            handle = handle[1:] if rng.random() < 0.5 else handle.upper()
        ids = {"social_handle": handle}
        if rng.random() < 0.1:
            ids["email"] = self._email(p, t, "social")
        self._emit(t, p, "social", "social_message", ids, None,
                   {"platform": _SOCIAL_PLATFORMS[self._rr(len(_SOCIAL_PLATFORMS))]})

    def _person_events(self, p: _Person) -> None:
        rng = self.rng
        n = max(1, int(round(rng.lognormvariate(self.mu, _SIGMA))))
        if n > 2000:
            n = 2000
        self.attempts = 0
        cum = p.cum
        total = cum[-1]
        episodes = self.episodes
        when = self._when
        rnd = self.rnd
        guard = n + 8
        while self.attempts < n and guard:
            guard -= 1
            episodes[bisect(cum, rnd() * total)](p, when(p))

    # -- driver ------------------------------------------------------------------------------------
    def records(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Sorted records ``key \\t person_id \\t event_id \\t line``.

        ``key`` is the fixed-width ``seconds-into-window, serial, copy`` sort key. person_id is empty
        for malformed lines; event_id is empty for malformed lines and for the re-sent copy of a
        duplicate. When more than ``chunk_size`` records are buffered, each day's records are
        appended to that day's file in a temporary directory; at the end every day is read back,
        sorted and emitted in turn.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        tmpdir: Optional[str] = None
        try:
            for household in self._households():
                for p in household:
                    self._person_events(p)
                if self.serial - self.spilled_serial >= chunk_size:
                    if tmpdir is None:
                        tmpdir = tempfile.mkdtemp(prefix="idres-synthetic-")
                    self._spill(tmpdir)
            self.stats["events"] = self.serial - self.stats["malformed"]
            buckets = self.buckets
            for day in range(len(buckets)):
                chunk = buckets[day]
                buckets[day] = []
                if tmpdir is not None:
                    path = os.path.join(tmpdir, f"day-{day:05d}")
                    if os.path.exists(path):
                        with open(path, "rb") as fh:
                            spilled = fh.read().split(b"\n")
                        spilled.pop()  # after the final newline
                        spilled.extend(chunk)
                        chunk = spilled
                chunk.sort()
                yield from chunk
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def _spill(self, tmpdir: str) -> None:
        buckets = self.buckets
        for day, chunk in enumerate(buckets):
            if chunk:
                with open(os.path.join(tmpdir, f"day-{day:05d}"), "ab") as fh:
                    fh.write(b"\n".join(chunk))
                    fh.write(b"\n")
                buckets[day] = []
        self.spilled_serial = self.serial


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def generate_lines(config: Optional[SyntheticConfig] = None, *,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[tuple[str, Optional[str]]]:
    """Yields ``(json_line, person_id_or_None)`` in ``occurred_at`` order.

    ``person_id`` is the ground truth (the real person behind the event) for valid events, including
    the re-sent copy of a duplicate; it is None for deliberately malformed lines. ``json_line`` has no
    trailing newline. ``chunk_size`` bounds the number of events held in memory (larger runs are
    sorted on disk and merged); it never changes the output.
    """
    builder = _Builder(config if config is not None else SyntheticConfig())
    for rec in builder.records(chunk_size):
        _key, pid, _eid, line = rec.split(b"\t", 3)
        yield line.decode(), (pid.decode() if pid else None)


def write_dataset(path_events, path_truth, config: Optional[SyntheticConfig] = None,
                  progress: Optional[Callable[[int], None]] = None, *,
                  chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict:
    """Writes the events as JSON lines (UTF-8, one per line) and the truth as CSV ``event_id,person_id``.

    The truth has a header line and one row per distinct valid event id (duplicates once, malformed
    lines not at all). ``progress``, if given, is called with the number of lines written since its
    previous call (every 10,000 lines, then once for the rest), so ``tqdm(...).update`` can be passed
    directly; the arguments add up to ``lines``.

    Returns statistics: ``events`` (distinct valid events = truth rows), ``lines`` (all lines written,
    including duplicates and malformed ones), ``duplicates``, ``malformed``, ``people``,
    ``households``, ``multi_person_households``, ``people_in_multi_person_households``,
    ``shared_landlines``, ``shared_tablets``, ``kiosks``, ``kiosk_events``, ``loyalty_members``,
    ``email_changes``, ``placeholder_events``, ``attribute_only_events``, ``anonymous_events``,
    ``purchases``, ``support_cases``, ``resolved_cases``, ``bytes`` (size of the events file).
    """
    builder = _Builder(config if config is not None else SyntheticConfig())
    written = 0
    out: list[bytes] = []
    truth: list[bytes] = []
    with open(path_events, "wb") as events_fh, open(path_truth, "wb") as truth_fh:
        truth_fh.write(b"event_id,person_id\n")
        for rec in builder.records(chunk_size):
            _key, pid, eid, line = rec.split(b"\t", 3)
            out.append(line)
            if eid:
                truth.append(eid + b"," + pid)
            if len(out) >= 10_000:
                events_fh.write(b"\n".join(out) + b"\n")
                written += len(out)
                if progress is not None:
                    progress(len(out))
                out.clear()
                if truth:
                    truth_fh.write(b"\n".join(truth) + b"\n")
                    truth.clear()
        if out:
            events_fh.write(b"\n".join(out) + b"\n")
            written += len(out)
            if progress is not None:
                progress(len(out))
        if truth:
            truth_fh.write(b"\n".join(truth) + b"\n")
    stats = dict(builder.stats)
    stats["lines"] = written
    stats["bytes"] = os.path.getsize(path_events)
    return stats


def read_truth_csv(path: str | os.PathLike) -> dict[str, str]:
    """A ground-truth CSV (header ``event_id,person_id``) as event ID -> person ID: ``read_truth_file``,
    the one reader of truth files (``idres evaluate``, the demo, the benchmarks)."""
    from streams.inputs import read_truth_file

    return read_truth_file(path)


def read_truth_events(path: str | os.PathLike, truth: dict[str, str]) -> Iterator[dict]:
    """The generated events that the ground truth lists, each once, in file order: malformed lines and
    re-sent duplicates (the generator writes both on purpose) are skipped."""
    seen: set[str] = set()
    with open(path, "rb") as fh:
        for line in fh:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            event_id = event.get("event_id") if isinstance(event, dict) else None
            if event_id not in truth or event_id in seen:
                continue
            seen.add(event_id)
            yield event
