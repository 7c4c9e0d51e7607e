#!/usr/bin/env python3
"""Independent multi-channel retail customer-event generator (seeded): the third generator of the benchmarks.

It was written by a separate author from the specification below, before reading the engine's code or its
other generators, and it is used to measure accuracy only: nothing in the engine is changed to fit it (see
benchmarks/README.md, "The retail corpus"). ``python benchmarks/retail_corpus.py --people 3000 --seed 20250607
--out DIR`` writes DIR/events.jsonl, DIR/truth.csv (event_id,person_id), DIR/annotations.jsonl (what each
event is, by the generator's tags) and DIR/people.jsonl; ``write_corpus`` does the same from Python.

SPECIFICATION (written before looking at any engine code)
=========================================================
A mid-size apparel/home retailer operating in the US, the UK and Germany.  ~3,000 customers
living in ~1,300 households, 2023-01-01 .. 2025-06-30.  Seven source systems emit events, each
with only the identifiers *that* system really holds, formatted the way *that* system formats them:

  web          clickstream (cookie device_id only while anonymous; cookies rotate, Safari
               users every few weeks), login (cookie + email + account_id), purchase
               (cookie + account_id + email + shipping name/address), guest checkout from the
               order-management system (email only + shipping name/address, sometimes a phone
               typed by the customer in any format), newsletter pop-up (email only).
  app          app_open (install id, + account_id when logged in), purchase (install id,
               account_id, email, name/address).
  email        ESP opens/clicks/unsubscribes: lower-cased email only (old emails keep
               receiving mail for months after a customer switches address).
  call_center  telephony caller-ID in E.164 (mobile, or the household landline: whoever
               in the family calls), agent-typed name as the caller says it (nicknames),
               sometimes a dictated email (typos), a postcode, a DOB for verification
               (day/month swaps), a loyalty number read out with spaces; case_resolved
               carries only the phone and the case_id.
  store        POS: loyalty card scan (card number only + UPPER-CASE card-holder name),
               e-receipt email keyed by staff (typos, placeholders test@test.com,
               noemail@noemail.com ...), phone lookup keyed by staff in national digits
               (placeholders 0000000000, 1234567890, 07000000000), postcode asked at the till;
               returns carry name+address+phone.
  loyalty      enrolment (card + email + phone + name + DOB + address, often keyed by store
               staff so typos/placeholders happen here too), points events (card only),
               card_reissued after a lost card (new card + the member's email or phone, or
               card + name + postcode only), profile_updated (married name, new address,
               new email).
  chat         web chat pre-chat form (first name + typed email, or logged-in cookie),
               social-messaging chat (social_handle + first name).

Person-level phenomena
  * nicknames: Robert/Bob, Elizabeth/Liz, Katharina/Kathi ...; each person registers online under
    one form and says another on the phone;
  * German umlauts written three ways (Müller/Mueller/Muller), O'Brien/OBrien, UPPER CASE POS;
  * married-name change: before the wedding a maiden surname, own address and maiden-based email;
    after it the spouse's (or double-barrelled) surname, the household address, often a new email;
    the mobile and loyalty card carry over;
  * household moves (address, postcode, sometimes city, and landline change);
  * mobiles changed; some old numbers are recycled by the carrier to an unrelated customer;
  * people switching email provider (old address still gets ESP mail);
  * loyalty cards lost and re-issued; partners occasionally use each other's card;
  * households sharing a landline, a family tablet (several members log in on one device id,
    and browse anonymously on it), a shared family email (thesmiths@...) used for orders,
    newsletters, ESP;
  * twins: same surname, address, landline, birth date, often similar first names;
  * Sr/Jr: father and son with the same full name at the same address, different DOB;
  * namesakes: two unrelated "John Smith" in the same city (sometimes the same postcode area);
  * DOB entry errors: day/month swapped, a year digit typo, placeholder 1900-01-01;
  * email typos: domain (gmial.com, gmail.con, hotmial.com, yaho.com, gmx.d), transposed/dropped/
    doubled letters in the local part; Gmail dot/plus variants of the same mailbox;
  * phone formats: US (415) 555-0134 / 415-555-0134 / +1 415 555 0134 / 4155550134,
    UK 07700 900123 / +44 7700 900123 / +44 (0)20 7946 0123, DE 0151 23456789 / +49 151 23456789 /
    (030) 1234567; the occasional digit typo;
  * store staff placeholders for email and phone; a few exact re-sent duplicate events.

Outputs (in --out dir): events.jsonl, truth.csv (event_id,person_id), annotations.jsonl
(event_id, person_id, household_id, tags: the phenomena that shaped the event, and owner
notes on identifiers belonging to someone else), people.jsonl (person-level facts).
"""
import argparse
import csv
import datetime as dt
import json
import os
import random
import string
import uuid

START = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
END = dt.datetime(2025, 6, 30, 23, 59, tzinfo=dt.timezone.utc)
SPAN = (END - START).total_seconds()

# ---------------------------------------------------------------- reference data
NAMES = {
    "US": {
        "M": [("Robert", ["Bob", "Rob", "Bobby"]), ("William", ["Bill", "Will", "Billy"]),
              ("James", ["Jim", "Jimmy", "Jamie"]), ("Michael", ["Mike"]), ("Richard", ["Rick", "Rich", "Dick"]),
              ("Thomas", ["Tom", "Tommy"]), ("Christopher", ["Chris"]), ("Joseph", ["Joe", "Joey"]),
              ("Daniel", ["Dan", "Danny"]), ("Matthew", ["Matt"]), ("Anthony", ["Tony"]), ("Steven", ["Steve"]),
              ("Edward", ["Ed", "Eddie", "Ted"]), ("Jonathan", ["Jon"]), ("Nicholas", ["Nick"]),
              ("Benjamin", ["Ben"]), ("Charles", ["Charlie", "Chuck"]), ("Andrew", ["Andy", "Drew"]),
              ("Timothy", ["Tim"]), ("Gregory", ["Greg"]), ("Peter", ["Pete"]), ("Samuel", ["Sam"]),
              ("Alexander", ["Alex"]), ("John", ["Jack", "Johnny"]), ("David", ["Dave"]), ("Kenneth", ["Ken"]),
              ("Jose", []), ("Carlos", []), ("Luis", []), ("Kevin", []), ("Brian", []), ("Jason", []),
              ("Ryan", []), ("Eric", []), ("Mark", []), ("Paul", []), ("Noah", []), ("Liam", []),
              ("Ethan", []), ("Tyler", []), ("Juan", []), ("Minh", [])],
        "F": [("Elizabeth", ["Liz", "Beth", "Betsy", "Lizzie"]), ("Katherine", ["Kate", "Kathy", "Katie"]),
              ("Margaret", ["Maggie", "Peggy", "Meg"]), ("Jennifer", ["Jen", "Jenny"]),
              ("Patricia", ["Pat", "Patty", "Trish"]), ("Susan", ["Sue", "Susie"]), ("Deborah", ["Deb", "Debbie"]),
              ("Rebecca", ["Becky", "Becca"]), ("Victoria", ["Vicky", "Tori"]), ("Jessica", ["Jess"]),
              ("Christine", ["Chris", "Chrissy"]), ("Barbara", ["Barb"]), ("Samantha", ["Sam"]),
              ("Abigail", ["Abby"]), ("Kimberly", ["Kim"]), ("Stephanie", ["Steph"]),
              ("Alexandra", ["Alex", "Lexi"]), ("Jacqueline", ["Jackie"]), ("Emma", []), ("Olivia", []),
              ("Sophia", []), ("Mia", []), ("Emily", []), ("Sarah", []), ("Karen", []), ("Linda", []),
              ("Nancy", []), ("Lisa", []), ("Maria", []), ("Ashley", []), ("Amanda", []), ("Michelle", []),
              ("Laura", []), ("Megan", []), ("Hannah", []), ("Grace", []), ("Chloe", []), ("Ana", [])],
    },
    "UK": {
        "M": [("Henry", ["Harry", "Hal"]), ("Edward", ["Ed", "Ted", "Eddie"]), ("William", ["Will", "Bill"]),
              ("Thomas", ["Tom"]), ("James", ["Jim", "Jamie"]), ("Oliver", ["Ollie"]), ("Alfred", ["Alf", "Alfie"]),
              ("Archibald", ["Archie"]), ("Frederick", ["Fred", "Freddie"]), ("Daniel", ["Dan"]),
              ("Samuel", ["Sam"]), ("Joseph", ["Joe"]), ("Robert", ["Rob", "Bob", "Robbie"]),
              ("Michael", ["Mike", "Mick"]), ("Christopher", ["Chris"]), ("Andrew", ["Andy"]),
              ("Richard", ["Rich"]), ("John", ["Jack"]), ("David", ["Dave"]), ("George", []), ("Jack", []),
              ("Harry", []), ("Mohammed", []), ("Callum", []), ("Connor", []), ("Gareth", []), ("Ian", []),
              ("Neil", []), ("Stuart", []), ("Graham", []), ("Paul", []), ("Mark", [])],
        "F": [("Elizabeth", ["Liz", "Beth", "Lizzie"]), ("Margaret", ["Maggie", "Peggy"]),
              ("Catherine", ["Cath", "Kate", "Katie"]), ("Victoria", ["Vicky", "Tori"]), ("Rebecca", ["Becky"]),
              ("Charlotte", ["Lottie", "Charlie"]), ("Eleanor", ["Ellie", "Nell"]), ("Isabella", ["Izzy", "Bella"]),
              ("Amelia", ["Millie"]), ("Jennifer", ["Jen", "Jenny"]), ("Susan", ["Sue"]),
              ("Deborah", ["Debbie"]), ("Olivia", ["Liv"]), ("Joanne", ["Jo"]), ("Nicola", ["Nicky"]),
              ("Alexandra", ["Alex"]), ("Samantha", ["Sam"]), ("Emily", []), ("Sophie", []), ("Lucy", []),
              ("Chloe", []), ("Grace", []), ("Jessica", ["Jess"]), ("Amy", []), ("Hannah", []), ("Gemma", []),
              ("Claire", []), ("Fatima", []), ("Sarah", []), ("Emma", [])],
    },
    "DE": {
        "M": [("Johannes", ["Hannes", "Jo"]), ("Wolfgang", ["Wolf"]), ("Friedrich", ["Fritz"]),
              ("Matthias", ["Matze"]), ("Christian", ["Chris"]), ("Sebastian", ["Basti"]), ("Thomas", ["Tom"]),
              ("Alexander", ["Alex", "Sascha"]), ("Michael", ["Micha"]), ("Andreas", ["Andi"]),
              ("Maximilian", ["Max"]), ("Tobias", ["Tobi"]), ("Florian", ["Flo"]), ("Daniel", ["Dani"]),
              ("Jürgen", []), ("Uwe", []), ("Klaus", []), ("Dieter", []), ("Frank", []), ("Jörg", []),
              ("Lukas", []), ("Leon", []), ("Felix", []), ("Jonas", []), ("Stefan", []), ("Björn", [])],
        "F": [("Katharina", ["Kathi", "Kati"]), ("Elisabeth", ["Lisa", "Elli", "Sissi"]), ("Margarete", ["Grete"]),
              ("Stefanie", ["Steffi"]), ("Franziska", ["Franzi"]), ("Susanne", ["Susi"]), ("Christina", ["Tina"]),
              ("Alexandra", ["Alex"]), ("Julia", ["Jule"]), ("Ursula", ["Uschi"]), ("Gabriele", ["Gabi"]),
              ("Barbara", ["Babsi"]), ("Anna", []), ("Lena", []), ("Lea", []), ("Laura", []), ("Sandra", []),
              ("Petra", []), ("Sabine", []), ("Claudia", []), ("Sophie", []), ("Hannah", []), ("Jana", []),
              ("Jessica", []), ("Käthe", [])],
    },
}
SURNAMES = {
    "US": ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
           "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson",
           "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis",
           "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill",
           "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter",
           "Roberts", "O'Brien", "McDonald", "Kowalski", "Schneider", "Patel", "Kim", "Chen", "Murphy",
           "Sullivan", "Price", "Bennett", "Wood", "Barnes", "Ross", "Henderson", "Coleman", "Jenkins",
           "Perry", "Powell", "Long", "Patterson", "Hughes", "Washington", "Butler", "Simmons", "Foster",
           "Gonzales", "Bryant", "Alexander", "Russell", "Griffin", "Diaz", "Hayes", "Myers", "Ford",
           "Hamilton", "Graham", "Sullivan", "Wallace", "Woods", "Cole", "West", "Jordan", "Owens",
           "Reynolds", "Fisher", "Ellis", "Harrison", "Gibson", "McCarthy", "Kennedy", "Wells", "Vasquez"],
    "UK": ["Smith", "Jones", "Williams", "Taylor", "Davies", "Evans", "Wilson", "Thomas", "Johnson", "Roberts",
           "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall", "Lewis",
           "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill", "Ward",
           "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen", "James", "Scott",
           "Phillips", "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths", "Mitchell",
           "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy", "Miller",
           "Cox", "Richards", "Khan", "Marshall", "Anderson", "Simpson", "Ellis", "Adams", "Singh", "Begum",
           "O'Neill", "MacDonald", "Fletcher", "Chapman", "Palmer", "Holmes", "Lloyd", "Gray", "Knight"],
    "DE": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
           "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz",
           "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Schmitz",
           "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler", "Herrmann", "König",
           "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters", "Lang", "Scholz", "Möller", "Weiß",
           "Jung", "Hahn", "Schubert", "Yilmaz", "Kaya", "Nowak"],
}
CITIES = {
    "US": [("San Francisco", "CA", ["941"], ["415"]), ("Chicago", "IL", ["606"], ["312", "773"]),
           ("Austin", "TX", ["787"], ["512"]), ("Boston", "MA", ["021"], ["617"]),
           ("Seattle", "WA", ["981"], ["206"])],
    "UK": [("London", "", ["SW1", "SW4", "SE15", "E1", "E8", "N1", "N16", "NW3", "W2", "W12"], ["20"]),
           ("Manchester", "", ["M1", "M4", "M14", "M20", "M21"], ["161"]),
           ("Leeds", "", ["LS1", "LS6", "LS8", "LS17"], ["113"])],
    "DE": [("Berlin", "", ["10", "12", "13"], ["30"]), ("München", "", ["80", "81"], ["89"]),
           ("Hamburg", "", ["20", "22"], ["40"])],
}
STREETS = {
    "US": ["Oak", "Maple", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Main", "Church",
           "Valencia", "Mission", "Lincoln", "Jefferson", "Sunset", "Highland", "River", "Spring", "Walnut"],
    "UK": ["Station", "High", "Church", "Victoria", "Park", "Mill", "Queens", "Kings", "Manor", "Grove",
           "Albert", "York", "Richmond", "Clarence", "Stanley", "Windsor", "Granville", "Oxford"],
    "DE": ["Haupt", "Schul", "Garten", "Bahnhof", "Linden", "Berg", "Kirch", "Wald", "Ring", "Birken",
           "Goethe", "Schiller", "Rosen", "Eichen", "Mozart", "Friedrich"],
}
US_SUFFIX = [("St", "Street"), ("Ave", "Avenue"), ("Rd", "Road"), ("Blvd", "Boulevard"), ("Dr", "Drive"),
             ("Ln", "Lane"), ("Ct", "Court")]
UK_SUFFIX = [("Rd", "Road"), ("St", "Street"), ("Ave", "Avenue"), ("Ln", "Lane"), ("Cl", "Close"),
             ("Gdns", "Gardens"), ("Terr", "Terrace")]
DOMAINS = {
    "US": [("gmail.com", 45), ("yahoo.com", 14), ("hotmail.com", 9), ("outlook.com", 8), ("icloud.com", 10),
           ("aol.com", 4), ("comcast.net", 4)],
    "UK": [("gmail.com", 38), ("hotmail.co.uk", 16), ("yahoo.co.uk", 8), ("btinternet.com", 8),
           ("outlook.com", 8), ("icloud.com", 8), ("sky.com", 4)],
    "DE": [("gmx.de", 25), ("web.de", 25), ("gmail.com", 25), ("t-online.de", 12), ("gmx.net", 6),
           ("outlook.de", 4)],
}
DOMAIN_TYPOS = {
    "gmail.com": ["gmial.com", "gmai.com", "gnail.com", "gmail.co", "gmail.con", "gamil.com", "gmaill.com"],
    "yahoo.com": ["yaho.com", "yahooo.com", "yahoo.co", "yhoo.com"],
    "hotmail.com": ["hotmial.com", "hotmail.con", "hotmai.com", "hotnail.com"],
    "outlook.com": ["outlok.com", "outlook.co", "outloo.com"],
    "icloud.com": ["icloud.co", "iclod.com", "icoud.com"],
    "aol.com": ["aol.co", "aol.con"],
    "comcast.net": ["comcast.com", "comcat.net"],
    "hotmail.co.uk": ["hotmail.co", "hotmial.co.uk", "hotmail.com.uk", "hotmail.uk"],
    "yahoo.co.uk": ["yahoo.co", "yaho.co.uk"],
    "btinternet.com": ["btinternet.co.uk", "btinterent.com", "btinternet.con"],
    "sky.com": ["sky.co.uk", "sky.con"],
    "gmx.de": ["gmx.d", "gmx.com", "gmc.de"],
    "web.de": ["wed.de", "web.d", "web.com"],
    "t-online.de": ["tonline.de", "t-onlin.de"],
    "gmx.net": ["gmx.ne", "gmx.de"],
    "outlook.de": ["outlook.com", "outlok.de"],
}
PLACEHOLDER_EMAILS = ["test@test.com", "noemail@noemail.com", "none@none.com", "na@na.com",
                      "no@email.com", "customer@store.com", "decline@decline.com", "x@x.com"]
PLACEHOLDER_PHONES = {"US": ["0000000000", "1234567890", "5555555555", "9999999999", "(000) 000-0000"],
                      "UK": ["07000000000", "00000000000", "01234567890", "07777777777"],
                      "DE": ["0000000000", "01234567890", "0123456789"]}
SIMILAR_TWIN_NAMES = [("Emma", "Emily"), ("Olivia", "Sophia"), ("Jacob", "Joshua"), ("Liam", "Logan"),
                      ("Hannah", "Anna"), ("Lena", "Lea"), ("Lukas", "Jonas"), ("Ethan", "Evan"),
                      ("Grace", "Lucy"), ("Ava", "Ella"), ("Max", "Moritz"), ("Aiden", "Jayden")]

TZ = {"US": [-8, -6, -6, -5, -8], "UK": [0, 1], "DE": [1, 2]}


class Rng(random.Random):
    def chance(self, p):
        return self.random() < p

    def wchoice(self, pairs):
        tot = sum(w for _, w in pairs)
        x = self.random() * tot
        for v, w in pairs:
            x -= w
            if x <= 0:
                return v
        return pairs[-1][0]


R = Rng()


def rand_time(lo=START, hi=END):
    if hi <= lo:
        return lo
    return lo + dt.timedelta(seconds=R.random() * (hi - lo).total_seconds())


# ---------------------------------------------------------------- phones
def digits(n):
    return "".join(R.choice(string.digits) for _ in range(n))


def new_mobile(country):
    if country == "US":
        area = R.choice(["415", "628", "312", "773", "512", "737", "617", "857", "206", "425", "646", "310"])
        return "+1" + area + R.choice("23456789") + digits(2) + digits(4)
    if country == "UK":
        return "+447" + R.choice(["700", "711", "723", "734", "745", "756", "767", "778", "789", "790", "801",
                                  "812", "823", "834", "845", "856", "867", "878", "889", "904", "912", "931",
                                  "944", "958", "969", "973", "984"]) + digits(6)
    return "+491" + R.choice(["51", "52", "57", "59", "60", "62", "70", "71", "72", "73", "75", "76", "77",
                              "78", "79"]) + digits(8)


def new_landline(country, city_info):
    area = R.choice(city_info[3])
    if country == "US":
        return "+1" + area + R.choice("23456789") + digits(2) + digits(4)
    if country == "UK":
        return "+44" + area + (R.choice("78") + digits(7) if area == "20" else digits(7))
    return "+49" + area + digits(7 if area == "30" else 7)


def fmt_phone(e164, style):
    """style: 'e164', 'typed', 'pos', 'intl' ."""
    if e164.startswith("+1"):
        n = e164[2:]
        a, b, c = n[:3], n[3:6], n[6:]
        opts = {"e164": [e164], "pos": [n],
                "intl": ["+1 %s %s %s" % (a, b, c), "+1-%s-%s-%s" % (a, b, c), e164],
                "typed": ["(%s) %s-%s" % (a, b, c), "%s-%s-%s" % (a, b, c), "%s.%s.%s" % (a, b, c), n,
                          "1-%s-%s-%s" % (a, b, c), "+1 %s %s %s" % (a, b, c), "(%s)%s-%s" % (a, b, c)]}
    elif e164.startswith("+44"):
        n = e164[3:]
        if n.startswith("7"):
            nat = "0" + n[:4] + " " + n[4:]
            sp = n[:4] + " " + n[4:]
        elif n.startswith("20"):
            nat = "020 " + n[2:6] + " " + n[6:]
            sp = "20 " + n[2:6] + " " + n[6:]
        else:
            nat = "0" + n[:3] + " " + n[3:6] + " " + n[6:]
            sp = n[:3] + " " + n[3:6] + " " + n[6:]
        opts = {"e164": [e164], "pos": ["0" + n],
                "intl": ["+44 " + sp, "+44 (0)" + sp, "0044 " + sp],
                "typed": [nat, "0" + n, "+44 " + sp, "+44 (0)" + sp, "+44" + n, nat.replace(" ", "-")]}
    else:
        n = e164[3:]
        if n.startswith("1"):
            pre, rest = n[:3], n[3:]
        else:
            pre, rest = n[:2], n[2:]
        opts = {"e164": [e164], "pos": ["0" + n],
                "intl": ["+49 %s %s" % (pre, rest), "0049 %s %s" % (pre, rest), "+49 (0)%s %s" % (pre, rest)],
                "typed": ["0%s %s" % (pre, rest), "0%s-%s" % (pre, rest), "0%s/%s" % (pre, rest),
                          "(0%s) %s" % (pre, rest), "+49 %s %s" % (pre, rest), "+49" + n]}
    return R.choice(opts[style])


def phone_typo(s):
    idx = [i for i, ch in enumerate(s) if ch.isdigit()]
    if len(idx) < 4:
        return s
    i = R.choice(idx[-7:])
    if R.chance(0.5) and i + 1 < len(s) and s[i + 1].isdigit() and s[i] != s[i + 1]:
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    return s[:i] + R.choice([d for d in string.digits if d != s[i]]) + s[i + 1:]


# ---------------------------------------------------------------- names / emails
UMLAUT = {"ä": ("ae", "a"), "ö": ("oe", "o"), "ü": ("ue", "u"), "ß": ("ss", "ss"), "Ä": ("Ae", "A"),
          "Ö": ("Oe", "O"), "Ü": ("Ue", "U")}


def ascii_fold(s, mode):  # mode 0: ae, 1: a
    return "".join(UMLAUT[c][mode] if c in UMLAUT else c for c in s)


def mailbox_base(s):
    s = ascii_fold(s, 0).lower()
    return "".join(c for c in s if c.isalnum())


def make_email(first, last, dob, country, taken, family=None):
    f, l = mailbox_base(first), mailbox_base(last)
    for _ in range(50):
        if family:
            local = R.choice(["the%ss" % l, "%sfamily" % l, "%s.family" % l, "%shome" % l,
                              "%s.house%d" % (l, R.randint(1, 99))])
        else:
            local = R.choice([
                "%s.%s" % (f, l), "%s%s" % (f, l), "%s%s" % (f[0], l), "%s.%s%d" % (f, l, dob.year % 100),
                "%s%s%d" % (f[0], l, R.randint(1, 99)), "%s_%s" % (f, l), "%s%d" % (f, dob.year),
                "%s.%s" % (l, f), "%s%s%d" % (f, l[0], R.randint(1, 999)),
                R.choice(["sunny", "blue", "happy", "dragon", "music", "tiger", "star", "coffee"]) + f +
                str(R.randint(1, 99))])
        dom = R.wchoice(DOMAINS[country])
        e = "%s@%s" % (local, dom)
        # one mailbox per address: Gmail ignores dots, so a.b@gmail.com and ab@gmail.com are one mailbox
        key = "%s@%s" % (local.replace(".", "") if dom == "gmail.com" else local, dom)
        if key not in taken:
            taken.add(key)
            return e
    raise RuntimeError


def email_typo(e):
    local, dom = e.split("@")
    kind = R.choice(["domain", "domain", "transpose", "drop", "double", "dot"])
    if kind == "domain" and dom in DOMAIN_TYPOS:
        return "%s@%s" % (local, R.choice(DOMAIN_TYPOS[dom])), "email_typo_domain"
    if kind == "dot" and "." in local:
        return "%s@%s" % (local.replace(".", "", 1), dom), "email_typo_local"
    if len(local) < 3:
        return "%s@%s" % (local + local[-1], dom), "email_typo_local"
    i = R.randrange(len(local) - 1)
    if kind == "drop":
        local2 = local[:i] + local[i + 1:]
    elif kind == "double":
        local2 = local[:i] + local[i] + local[i:]
    else:
        if local[i] == local[i + 1]:
            local2 = local[:i] + local[i + 1:]
        else:
            local2 = local[:i] + local[i + 1] + local[i] + local[i + 2:]
    return "%s@%s" % (local2, dom), "email_typo_local"


def gmail_variant(e):
    local, dom = e.split("@")
    if dom != "gmail.com":
        return e, None
    if R.chance(0.5):
        return "%s+%s@%s" % (local, R.choice(["shop", "store", "orders", "promo"]), dom), "gmail_plus"
    if "." in local:
        return "%s@%s" % (local.replace(".", ""), dom), "gmail_dots"
    i = R.randint(1, max(1, len(local) - 1))
    return "%s.%s@%s" % (local[:i], local[i:], dom), "gmail_dots"


def case_variant(e):
    local, dom = e.split("@")
    r = R.random()
    if r < 0.1:
        return e.upper()
    if r < 0.25:
        return local[:1].upper() + local[1:] + "@" + dom
    if r < 0.35:
        return ".".join(p.capitalize() for p in local.split(".")) + "@" + dom
    return e


def name_typo(n):
    if len(n) < 4:
        return n
    i = R.randrange(1, len(n) - 1)
    k = R.choice(["swap", "drop", "double"])
    if k == "swap":
        return n[:i] + n[i + 1] + n[i] + n[i + 2:]
    if k == "drop":
        return n[:i] + n[i + 1:]
    return n[:i] + n[i] + n[i:]


# ---------------------------------------------------------------- addresses
def new_address(country, city_info, near_postcode=None):
    city = city_info[0]
    street = R.choice(STREETS[country])
    no = R.randint(1, 240)
    unit = None
    if country == "US":
        suf = R.choice(US_SUFFIX)
        unit = R.choice([None, None, None, "Apt %d" % R.randint(1, 30), "#%d%s" % (R.randint(1, 9), R.choice("ABC"))])
        pc = near_postcode or (R.choice(city_info[2]) + "%02d" % R.randint(2, 34))
        a = {"no": str(no), "street": street, "suf": suf, "unit": unit}
    elif country == "UK":
        suf = R.choice(UK_SUFFIX)
        unit = R.choice([None, None, "Flat %d" % R.randint(1, 12)])
        out = near_postcode.split(" ")[0] if near_postcode else R.choice(city_info[2])
        pc = "%s %d%s%s" % (out, R.randint(1, 9), R.choice("ABDEFGHJLNPQRSTUWXYZ"), R.choice("ABDEFGHJLNPQRSTUWXYZ"))
        a = {"no": str(no), "street": street, "suf": suf, "unit": unit}
    else:
        suf = R.choice([("str.", "straße"), ("weg", "weg"), ("allee", "allee"), ("platz", "platz")])
        pc = near_postcode or (R.choice(city_info[2]) + "%03d" % R.randint(100, 999))
        a = {"no": str(no), "street": street, "suf": suf, "unit": None}
    a.update(postcode=pc, city=city, state=city_info[1], country=country)
    return a


def fmt_address(a, upper=False):
    c = a["country"]
    if c == "DE":
        suf = a["suf"]
        s = R.choice([suf[1], suf[0]]) if suf[0] != suf[1] else suf[0]
        if s == "straße" and R.chance(0.3):
            s = "strasse"
        line = "%s%s %s" % (a["street"], s, a["no"])
    else:
        suf = R.choice(a["suf"])
        line = "%s %s %s" % (a["no"], a["street"], suf)
        if a["unit"]:
            if c == "UK":
                line = R.choice(["%s, %s", "%s %s"]) % (a["unit"], line)
            else:
                line = R.choice(["%s %s", "%s, %s"]) % (line, a["unit"])
    return line.upper() if upper else line


def fmt_postcode(a):
    pc = a["postcode"]
    if a["country"] == "UK":
        return R.choice([pc, pc, pc.lower(), pc.replace(" ", "")])
    if a["country"] == "US" and R.chance(0.1):
        return pc + "-" + digits(4)
    return pc


def fmt_city(a):
    c = a["city"]
    if c == "München":
        return R.choice(["München", "Muenchen", "Munich"])
    if a["country"] == "US" and R.chance(0.2):
        return c.upper()
    return c


# ---------------------------------------------------------------- model
class Household:
    def __init__(self, hid, country):
        self.hid = hid
        self.country = country
        self.city_info = R.choice(CITIES[country])
        self.addresses = []  # (start, end, addr)
        self.landlines = []  # (start, end, number)
        self.family_email = None
        self.family_email_users = []
        self.tablet = None
        self.tablet_users = []
        self.members = []
        self.tags = []

    def at(self, lst, t):
        for s, e, v in lst:
            if s <= t < e:
                return v
        return None


class Person:
    def __init__(self, pid, hh):
        self.pid = pid
        self.hh = hh
        self.country = hh.country
        self.tags = []
        self.emails = []      # (start, end, email)
        self.mobiles = []     # (start, end, number)
        self.cards = []       # (start, end, card)
        self.surnames = []    # (start, end, surname)
        self.own_addresses = []  # (start, end, addr) before joining household (maiden)
        self.cookies = []     # browser cookies (start, end, id)
        self.app_ids = []
        self.account_id = None
        self.social = None
        self.nick_pref = None
        self.relation = {}

    def val(self, lst, t):
        for s, e, v in lst:
            if s <= t < e:
                return v
        return None

    def surname(self, t):
        return self.val(self.surnames, t)

    def address(self, t):
        return self.val(self.own_addresses, t) or self.hh.at(self.hh.addresses, t)

    def landline(self, t):
        if self.val(self.own_addresses, t):
            return None
        return self.hh.at(self.hh.landlines, t)

    def email(self, t):
        return self.val(self.emails, t)

    def mobile(self, t):
        return self.val(self.mobiles, t)

    def card(self, t):
        return self.val(self.cards, t)


def pick_first(country, sex):
    return R.choice(NAMES[country][sex])


def make_dob(lo_age, hi_age):
    y = 2025 - R.randint(lo_age, hi_age)
    return dt.date(y, R.randint(1, 12), R.randint(1, 28))


def build_population(n_people):
    households, people = [], []
    taken_emails = set()
    pid_n = [0]
    used_cards = set()

    def new_pid():
        pid_n[0] += 1
        return "P%05d" % pid_n[0]

    def new_card(country):
        while True:
            c = {"US": "6045", "UK": "6331", "DE": "9276"}[country] + digits(8)
            if c not in used_cards:
                used_cards.add(c)
                return c

    surname_w = {}

    def pick_surname(country):
        lst = SURNAMES[country]
        if country not in surname_w:
            surname_w[country] = [(s, 1.0 / (i + 3) ** 0.9) for i, s in enumerate(lst)]
        return R.wchoice(surname_w[country])

    def add_person(hh, first_pair, sex, surname, dob, role):
        p = Person(new_pid(), hh)
        p.first, p.nicks = first_pair
        p.sex = sex
        p.dob = dob
        p.role = role
        p.surnames = [(START - dt.timedelta(days=99999), END + dt.timedelta(days=9), surname)]
        hh.members.append(p)
        people.append(p)
        return p

    hid = 0
    while len(people) < n_people:
        hid += 1
        country = R.wchoice([("US", 55), ("UK", 30), ("DE", 15)])
        hh = Household("H%05d" % hid, country)
        households.append(hh)
        size = R.wchoice([(1, 34), (2, 31), (3, 15), (4, 13), (5, 7)])
        sur = pick_surname(country)
        a0 = new_address(country, hh.city_info)
        hh.addresses = [(START - dt.timedelta(days=99999), END + dt.timedelta(days=9), a0)]
        sex1 = R.choice("MF")
        head = add_person(hh, pick_first(country, sex1), sex1, sur, make_dob(24, 80), "adult")
        if size >= 2:
            sex2 = "F" if sex1 == "M" else R.wchoice([("M", 85), ("F", 15)])
            age_h = 2025 - head.dob.year
            dob2 = make_dob(max(20, age_h - 8), min(85, age_h + 6))
            partner = add_person(hh, pick_first(country, sex2), sex2,
                                 sur if R.chance(0.75) else pick_surname(country), dob2, "adult")
            head.relation["partner"] = partner.pid
            partner.relation["partner"] = head.pid
        kids = max(0, size - 2)
        twins_made = False
        jr_made = False
        for k in range(kids):
            age_h = 2025 - head.dob.year
            if age_h < 40:
                break
            lo, hi = 16, min(age_h - 20, 45)
            if hi < lo:
                break
            sexk = R.choice("MF")
            # Jr: son with father's name
            if not jr_made and head.sex == "M" and sexk == "M" and R.chance(0.12):
                kid = add_person(hh, (head.first, head.nicks), "M", sur, make_dob(lo, hi), "child")
                kid.tags.append("jr_sr")
                head.tags.append("jr_sr")
                kid.relation["father_same_name"] = head.pid
                head.relation["son_same_name"] = kid.pid
                jr_made = True
                continue
            if not twins_made and k + 1 < kids and R.chance(0.28):
                dobt = make_dob(lo, hi)
                if R.chance(0.5):
                    n1, n2 = R.choice(SIMILAR_TWIN_NAMES)
                    f1, f2 = (n1, []), (n2, [])
                    s1 = s2 = sexk
                else:
                    s1, s2 = R.choice("MF"), R.choice("MF")
                    f1 = pick_first(country, s1)
                    f2 = pick_first(country, s2)
                    while f2[0] == f1[0]:
                        f2 = pick_first(country, s2)
                t1 = add_person(hh, f1, s1, sur, dobt, "child")
                t2 = add_person(hh, f2, s2, sur, dobt, "child")
                for a, b in ((t1, t2), (t2, t1)):
                    a.tags.append("twin")
                    a.relation["twin"] = b.pid
                twins_made = True
                continue
            if twins_made and k == kids - 1:
                break
            add_person(hh, pick_first(country, sexk), sexk, sur, make_dob(lo, hi), "child")
        hh_people = hh.members
        # landline
        if R.chance({"US": 0.25, "UK": 0.5, "DE": 0.6}[country] if len(hh_people) > 1 else 0.2):
            hh.landlines = [(START - dt.timedelta(days=99999), END + dt.timedelta(days=9),
                             new_landline(country, hh.city_info))]
            hh.tags.append("landline")
        # moves
        if R.chance(0.15):
            tmove = rand_time(START + dt.timedelta(days=120), END - dt.timedelta(days=120))
            ci = hh.city_info if R.chance(0.7) else R.choice(CITIES[country])
            a1 = new_address(country, ci)
            hh.addresses = [(hh.addresses[0][0], tmove, a0), (tmove, hh.addresses[0][1], a1)]
            hh.tags.append("moved")
            hh.move_time = tmove
            if hh.landlines:
                l0 = hh.landlines[0][2]
                hh.landlines = [(hh.landlines[0][0], tmove, l0),
                                (tmove, hh.landlines[0][1], new_landline(country, ci))]
        # family email / tablet
        if len(hh_people) >= 2 and R.chance(0.12):
            hh.family_email = make_email("", sur, head.dob, country, taken_emails, family=True)
            hh.family_email_users = [m for m in hh_people if m.role == "adult"] + \
                [m for m in hh_people if m.role == "child" and R.chance(0.3)]
            hh.tags.append("family_email")
        if len(hh_people) >= 2 and R.chance(0.18):
            hh.tablet = str(uuid.UUID(int=R.getrandbits(128))).upper()
            hh.tablet_users = [m for m in hh_people if R.chance(0.8)] or hh_people[:2]
            hh.tags.append("family_tablet")
        for m in hh_people:
            if m in hh.tablet_users:
                m.tags.append("family_tablet")
            if m in hh.family_email_users:
                m.tags.append("family_email")
            if hh.landlines:
                m.tags.append("household_landline")
            if "moved" in hh.tags:
                m.tags.append("moved")

    # married-name change: partners in households, one female partner with same surname as head
    for hh in households:
        adults = [m for m in hh.members if m.role == "adult"]
        if len(adults) == 2 and R.chance(0.14):
            wife = [m for m in adults if m.sex == "F"]
            if not wife:
                continue
            w = wife[0]
            husband = [m for m in adults if m is not w][0]
            tw = rand_time(START + dt.timedelta(days=90), END - dt.timedelta(days=150))
            maiden = pick_surname(hh.country)
            while maiden == husband.surname(tw):
                maiden = pick_surname(hh.country)
            new = husband.surname(tw)
            if R.chance(0.15):
                new = "%s-%s" % (maiden, new)
            w.surnames = [(START - dt.timedelta(days=99999), tw, maiden), (tw, END + dt.timedelta(days=9), new)]
            if R.chance(0.6):  # lived apart before the wedding
                w.own_addresses = [(START - dt.timedelta(days=99999), tw, new_address(hh.country, hh.city_info))]
            w.tags.append("married_name_change")
            w.marry_time = tw

    # forced namesakes: unrelated people given the same full name, same city
    singles = [p for p in people if p.role == "adult" and "married_name_change" not in p.tags
               and "jr_sr" not in p.tags]
    R.shuffle(singles)
    used = set()
    n_pairs = 0
    for a in singles:
        if n_pairs >= 45 or a.pid in used:
            continue
        for b in singles:
            if b is a or b.pid in used or b.hh is a.hh or b.country != a.country or b.sex != a.sex \
                    or b.hh.city_info[0] != a.hh.city_info[0] or b.relation.get("partner"):
                continue
            if len(b.hh.members) > 1:  # b lives alone, so renaming b touches nobody else
                continue
            b.first, b.nicks = a.first, a.nicks
            b.surnames = [(s, e, a.surnames[0][2]) for s, e, _ in b.surnames]
            if R.chance(0.3):  # same postcode area
                addr = b.hh.addresses[-1][2]
                addr["postcode"] = a.hh.addresses[-1][2]["postcode"] if a.country != "UK" else \
                    a.hh.addresses[-1][2]["postcode"].split(" ")[0] + addr["postcode"][addr["postcode"].index(" "):]
                b.tags.append("namesake_same_postcode")
                a.tags.append("namesake_same_postcode")
            a.tags.append("namesake")
            b.tags.append("namesake")
            a.relation["namesake"] = b.pid
            b.relation["namesake"] = a.pid
            used.update([a.pid, b.pid])
            n_pairs += 1
            break

    # per-person identifiers
    recyclable = []
    for p in people:
        c = p.country
        age = 2025 - p.dob.year
        p.profile = R.wchoice([("digital", 35 if age < 45 else 15), ("omni", 35), ("store", 20 if age < 60 else 35),
                               ("phone", 5 if age < 55 else 20)])
        p.activity = min(120, max(1, int(R.lognormvariate(1.75, 0.85))))
        # nickname preference: which name the person gives online
        p.nick_pref = R.choice(p.nicks) if p.nicks and R.chance(0.3) else None
        has_email = R.chance(0.93 if age < 65 else 0.7)
        if not has_email and p in p.hh.family_email_users:
            has_email = False
        if has_email:
            s0 = p.surnames[0][2]
            e0 = make_email(p.nick_pref or p.first if R.chance(0.3) else p.first, s0, p.dob, c, taken_emails)
            if "married_name_change" in p.tags and R.chance(0.6):
                tw = p.marry_time + dt.timedelta(days=R.randint(5, 120))
                e1 = make_email(p.first, p.surnames[1][2].split("-")[-1], p.dob, c, taken_emails)
                p.emails = [(START - dt.timedelta(days=9999), tw, e0), (tw, END + dt.timedelta(days=9), e1)]
                p.old_email_live_until = tw + dt.timedelta(days=R.randint(30, 400))
                p.tags.append("new_email_after_marriage")
            elif R.chance(0.07):
                tw = rand_time(START + dt.timedelta(days=60), END - dt.timedelta(days=60))
                e1 = make_email(p.first, p.surname(END), p.dob, c, taken_emails)
                p.emails = [(START - dt.timedelta(days=9999), tw, e0), (tw, END + dt.timedelta(days=9), e1)]
                p.old_email_live_until = tw + dt.timedelta(days=R.randint(30, 400))
                p.tags.append("switched_email")
            else:
                p.emails = [(START - dt.timedelta(days=9999), END + dt.timedelta(days=9), e0)]
            if R.chance(0.08):
                we = "%s.%s@%s" % (mailbox_base(p.first), mailbox_base(p.surname(END)),
                                   R.choice(["acme-corp.com", "globex.com", "initech.com", "contoso.com",
                                             "nhs.net", "siemens.com", "ucla.edu"]))
                while we in taken_emails:  # a second John Smith at work gets john.smith2@
                    l_, d_ = we.split("@")
                    we = "%s%d@%s" % (l_.rstrip(string.digits), R.randint(2, 9), d_)
                taken_emails.add(we)
                p.work_email = we
                p.tags.append("work_email")
            else:
                p.work_email = None
        else:
            p.work_email = None
            p.tags.append("no_personal_email")
        if R.chance(0.9 if age < 70 else 0.6):
            m0 = new_mobile(c)
            if R.chance(0.06):
                tc = rand_time(START + dt.timedelta(days=60), END - dt.timedelta(days=200))
                m1 = new_mobile(c)
                p.mobiles = [(START - dt.timedelta(days=9999), tc, m0), (tc, END + dt.timedelta(days=9), m1)]
                p.tags.append("changed_mobile")
                if R.chance(0.4):
                    recyclable.append((p, m0, tc))
            else:
                p.mobiles = [(START - dt.timedelta(days=9999), END + dt.timedelta(days=9), m0)]
        else:
            p.tags.append("no_mobile")
        if R.chance({"digital": 0.35, "omni": 0.65, "store": 0.75, "phone": 0.3}[p.profile]):
            t0 = rand_time(START - dt.timedelta(days=700), END - dt.timedelta(days=30))
            c0 = new_card(c)
            if R.chance(0.1):
                tl = rand_time(max(t0, START) + dt.timedelta(days=30), END - dt.timedelta(days=20))
                c1 = new_card(c)
                p.cards = [(t0, tl, c0), (tl, END + dt.timedelta(days=9), c1)]
                p.tags.append("card_reissued")
                p.reissue_time = tl
            else:
                p.cards = [(t0, END + dt.timedelta(days=9), c0)]
            p.enrol_time = t0
        if R.chance({"digital": 0.9, "omni": 0.7, "store": 0.25, "phone": 0.15}[p.profile]) and p.emails:
            p.account_id = "C%08d" % R.randint(10 ** 7, 10 ** 8 - 1)
        # browsers: cookies rotate
        nb = R.choice([1, 1, 2, 2, 3])
        for _ in range(nb):
            life = R.choice([14, 30, 90, 365, 2000])
            t = START - dt.timedelta(days=R.randint(0, 300))
            while t < END:
                e = t + dt.timedelta(days=life * R.uniform(0.5, 1.5))
                p.cookies.append((t, e, str(uuid.UUID(int=R.getrandbits(128)))))
                t = e
        if age < 60 and R.chance(0.6):
            p.app_ids = [str(uuid.UUID(int=R.getrandbits(128))).upper()]
        if age < 45 and R.chance(0.25):
            p.social = "@" + mailbox_base(p.first)[:8] + R.choice(["", "_", "."]) + \
                mailbox_base(p.surname(END))[:6] + str(R.randint(1, 999))
    # phone recycling: the carrier hands the number to another customer (no mobile of their own)
    takers = [p for p in people if "no_mobile" in p.tags and p.role != "child"]
    R.shuffle(takers)
    for old, num, tc in recyclable:
        cand = [t for t in takers if t.hh is not old.hh and t.country == old.country]
        if not cand:
            continue
        newp = cand[0]
        takers.remove(newp)
        tt = tc + dt.timedelta(days=R.randint(60, 150))
        if tt >= END:
            continue
        newp.mobiles = [(tt, END + dt.timedelta(days=9), num)]
        newp.tags.remove("no_mobile")
        newp.tags.append("recycled_number_new_owner")
        newp.relation["recycled_from"] = old.pid
        old.relation["recycled_to"] = newp.pid
        old.tags.append("recycled_number_old_owner")
    # shared loyalty card between partners: the partner without a card uses the other's
    for hh in households:
        adults = [m for m in hh.members if m.role == "adult"]
        if len(adults) == 2:
            a, b = adults
            if a.cards and not b.cards and R.chance(0.35):
                b.borrow_card_from = a
                b.tags.append("uses_partner_card")
                a.tags.append("card_used_by_partner")
            elif b.cards and not a.cards and R.chance(0.35):
                a.borrow_card_from = b
                a.tags.append("uses_partner_card")
                b.tags.append("card_used_by_partner")
    return households, people


# ---------------------------------------------------------------- events
class Emitter:
    def __init__(self):
        self.events = []
        self.n = 0

    def emit(self, p, t, channel, etype, ids, attrs, payload, tags, owners=None):
        ids = {k: v for k, v in ids.items() if v}
        attrs = {k: v for k, v in (attrs or {}).items() if v}
        if not ids and not attrs:
            return None
        ev = {"_t": t, "channel": channel, "event_type": etype, "identifiers": ids}
        if attrs:
            ev["attributes"] = attrs
        if payload:
            ev["payload"] = payload
        ev["_ann"] = {"person_id": p.pid, "household_id": p.hh.hid, "tags": sorted(set(tags)),
                      "owners": owners or {}}
        self.events.append(ev)
        return ev


def fmt_time(t, country):
    off = R.choice(TZ[country])
    style = R.random()
    if style < 0.5:
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style < 0.65:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % R.randint(0, 999)
    if style < 0.9:
        lt = t.astimezone(dt.timezone(dt.timedelta(hours=off)))
        return lt.isoformat(timespec="seconds")
    return t.strftime("%Y-%m-%dT%H:%M:%S")  # naive: UTC by contract


class Ctx:
    """What the person says/has at time t, with the tags explaining deviations."""

    def __init__(self, p, t):
        self.p, self.t = p, t

    def given(self, nick_rate):
        p = self.p
        if p.nicks and R.chance(nick_rate):
            return R.choice(p.nicks), ["nickname"]
        if p.nick_pref and R.chance(0.6):
            return p.nick_pref, ["nickname"]
        return p.first, []

    def names(self, nick_rate=0.15, typo=0.0, upper=False, fold=None):
        p = self.p
        tags = []
        f, tg = self.given(nick_rate)
        tags += tg
        l = p.surname(self.t)
        if len(p.surnames) > 1 and self.t < p.surnames[0][1]:
            tags.append("maiden_name")
        elif len(p.surnames) > 1:
            tags.append("married_name")
        if "jr_sr" in p.tags and p.role == "child" and R.chance(0.2):
            l = l + " Jr"
            tags.append("jr_suffix")
        if p.country == "DE" and any(ch in UMLAUT for ch in f + l):
            mode = fold if fold is not None else R.choice([None, None, 0, 1])
            if mode is not None:
                f, l = ascii_fold(f, mode), ascii_fold(l, mode)
                tags.append("umlaut_folded")
        if "'" in l and R.chance(0.4):
            l = l.replace("'", R.choice(["", " "]))
            tags.append("apostrophe_variant")
        if typo and R.chance(typo):
            if R.chance(0.5):
                l = name_typo(l)
            else:
                f = name_typo(f)
            tags.append("name_typo")
        if upper:
            f, l = f.upper(), l.upper()
        return f, l, tags

    def addr_attrs(self, upper=False):
        p = self.p
        a = p.address(self.t)
        tags = []
        if p.val(p.own_addresses, self.t):
            tags.append("pre_marriage_address")
        elif "moved" in p.hh.tags and self.t < p.hh.move_time:
            tags.append("old_address")
        elif "moved" in p.hh.tags:
            tags.append("new_address")
        return {"address": fmt_address(a, upper), "postcode": fmt_postcode(a), "city": fmt_city(a)}, tags

    def dob(self, err=0.04, placeholder=0.0):
        d = self.p.dob
        if placeholder and R.chance(placeholder):
            return "1900-01-01", ["dob_placeholder"]
        if R.chance(err):
            if d.day <= 12 and d.day != d.month and R.chance(0.75):
                return dt.date(d.year, d.day, d.month).isoformat(), ["dob_day_month_swap"]
            y = d.year + R.choice([-10, -1, 1, 10])
            return dt.date(y, d.month, d.day).isoformat(), ["dob_year_typo"]
        _ = R.random()
        return d.isoformat(), []

    def email(self, typo=0.0, placeholder=0.0, allow_family=True, allow_work=False, ptags=None):
        """The email the person gives. Returns (value, tags, owner_note)."""
        p = self.p
        tags = []
        if placeholder and R.chance(placeholder):
            return R.choice(PLACEHOLDER_EMAILS), ["placeholder_email"], "placeholder"
        e = p.email(self.t)
        owner = None
        if p.hh.family_email and p in p.hh.family_email_users and allow_family and (not e or R.chance(0.45)):
            e = p.hh.family_email
            tags.append("family_email")
            owner = "household"
        elif allow_work and p.work_email and R.chance(0.3):
            e = p.work_email
            tags.append("work_email")
        elif e and len(p.emails) > 1 and self.t >= p.emails[1][0] and self.t < p.old_email_live_until \
                and R.chance(0.25):
            e = p.emails[0][2]
            tags.append("old_email")
        if not e:
            return None, [], None
        if len(p.emails) > 1 and e == p.emails[1][2]:
            tags.append("new_email")
        if R.chance(0.05):
            e2, tg = gmail_variant(e)
            if tg:
                e = e2
                tags.append(tg)
        if typo and R.chance(typo):
            e, tg = email_typo(e)
            tags.append(tg)
        e = case_variant(e)
        return e, tags, owner

    def phone(self, style, typo=0.0, placeholder=0.0, landline_rate=0.3):
        p = self.p
        if placeholder and R.chance(placeholder):
            return R.choice(PLACEHOLDER_PHONES[p.country]), ["placeholder_phone"], "placeholder"
        m = p.mobile(self.t)
        l = p.landline(self.t)
        tags = []
        owner = None
        if l and (not m or R.chance(landline_rate)):
            num = l
            tags.append("household_landline")
            owner = "household"
            if "moved" in p.hh.tags and self.t < p.hh.move_time:
                tags.append("old_landline")
        elif m:
            num = m
            if "recycled_number_new_owner" in p.tags:
                tags.append("recycled_number")
                owner = "recycled"
            if "changed_mobile" in p.tags:
                tags.append("old_mobile" if self.t < p.mobiles[0][1] else "new_mobile")
        else:
            return None, [], None
        s = fmt_phone(num, style)
        if typo and R.chance(typo):
            s = phone_typo(s)
            tags.append("phone_typo")
        return s, tags, owner

    def card(self):
        p = self.p
        c = p.card(self.t)
        if c:
            tags = ["reissued_card"] if len(p.cards) > 1 and self.t >= p.cards[1][0] else []
            return c, tags, None
        b = getattr(p, "borrow_card_from", None)
        if b and b.card(self.t):
            return b.card(self.t), ["partner_card"], "partner"
        return None, [], None

    def cookie(self):
        p = self.p
        if p.hh.tablet and p in p.hh.tablet_users and R.chance(0.3):
            return p.hh.tablet, ["family_tablet"], "household"
        live = [v for s, e, v in p.cookies if s <= self.t < e]
        if not live:
            return None, [], None
        return R.choice(live), [], None

    def app_device(self):
        p = self.p
        if p.hh.tablet and p in p.hh.tablet_users and (not p.app_ids or R.chance(0.35)):
            return p.hh.tablet, ["family_tablet"], "household"
        if p.app_ids:
            return p.app_ids[0], [], None
        return None, [], None


def amount(country):
    return round(R.lognormvariate(3.6, 0.8), 2), {"US": "USD", "UK": "GBP", "DE": "EUR"}[country]


def gen_events(people):
    E = Emitter()
    case_no = [100000]
    order_no = [5000000]

    def own(owners, k, o):
        if o:
            owners[k] = o

    for p in people:
        c = p.country
        weights = {
            "digital": [("web", 40), ("app", 20), ("email", 25), ("chat", 6), ("store", 5), ("call_center", 2),
                        ("loyalty", 2)],
            "omni": [("web", 25), ("app", 10), ("email", 20), ("chat", 5), ("store", 25), ("call_center", 6),
                     ("loyalty", 9)],
            "store": [("web", 6), ("app", 2), ("email", 12), ("chat", 2), ("store", 55), ("call_center", 8),
                      ("loyalty", 15)],
            "phone": [("web", 5), ("app", 1), ("email", 15), ("chat", 2), ("store", 25), ("call_center", 45),
                      ("loyalty", 7)],
        }[p.profile]
        if not p.cards and not getattr(p, "borrow_card_from", None):
            weights = [(ch, w) for ch, w in weights if ch != "loyalty"]
        n_int = p.activity
        # loyalty enrolment happens in-window if card start in window
        todo = []
        if p.cards and p.enrol_time >= START:
            todo.append((p.enrol_time, "enrol"))
        if "card_reissued" in p.tags:
            todo.append((p.reissue_time + dt.timedelta(minutes=5), "reissue"))
        if "married_name_change" in p.tags and p.cards and R.chance(0.6):
            todo.append((p.marry_time + dt.timedelta(days=R.randint(3, 90)), "profile_update_marriage"))
        if "moved" in p.hh.tags and p.cards and R.chance(0.5):
            todo.append((p.hh.move_time + dt.timedelta(days=R.randint(3, 90)), "profile_update_move"))
        for _ in range(n_int):
            todo.append((rand_time(), R.wchoice(weights)))
        for t, kind in sorted(todo, key=lambda x: x[0]):
            if t > END:
                continue
            x = Ctx(p, t)
            if kind == "web":
                ck, ctags, cown = x.cookie()
                if not ck:
                    continue
                r = R.random()
                nviews = R.randint(1, 4)
                for i in range(nviews):
                    E.emit(p, t + dt.timedelta(seconds=40 * i), "web", "page_view", {"device_id": ck}, None,
                           {"url": R.choice(["/", "/sale", "/women/dresses", "/men/shoes", "/home/bedding",
                                             "/kids", "/search?q=jacket"])}, ["anonymous_session"] + ctags,
                           {"device_id": cown} if cown else None)
                t2 = t + dt.timedelta(seconds=40 * nviews)
                if r < 0.35 and p.account_id:
                    e, etags, eown = x.email(typo=0.0, allow_family=False)
                    ow = {}
                    own(ow, "device_id", cown)
                    E.emit(p, t2, "web", "login", {"device_id": ck, "email": e, "account_id": p.account_id},
                           None, None, ["login"] + ctags + etags, ow)
                    if R.chance(0.5):
                        f, l, ntags = x.names(nick_rate=0.0)
                        aa, atags = x.addr_attrs()
                        amt, cur = amount(c)
                        order_no[0] += 1
                        E.emit(p, t2 + dt.timedelta(minutes=R.randint(2, 30)), "web", "purchase",
                               {"device_id": ck, "email": e, "account_id": p.account_id},
                               dict(first_name=f, last_name=l, **aa),
                               {"order_id": "W%d" % order_no[0], "amount": amt, "currency": cur},
                               ctags + etags + ntags + atags, ow)
                elif r < 0.5:
                    # guest checkout via order management system: email (+maybe phone), shipping name/address
                    e, etags, eown = x.email(typo=0.03)
                    if not e:
                        continue
                    ow = {}
                    own(ow, "email", eown)
                    ids = {"email": e}
                    tags = ["guest_checkout"] + etags
                    if R.chance(0.35):
                        ph, ptags, pown = x.phone("typed", typo=0.02, landline_rate=0.3)
                        ids["phone"] = ph
                        tags += ptags
                        own(ow, "phone", pown)
                    f, l, ntags = x.names(nick_rate=0.2, typo=0.02)
                    aa, atags = x.addr_attrs()
                    amt, cur = amount(c)
                    order_no[0] += 1
                    E.emit(p, t2 + dt.timedelta(minutes=R.randint(2, 30)), "web", "purchase", ids,
                           dict(first_name=f, last_name=l, **aa),
                           {"order_id": "G%d" % order_no[0], "amount": amt, "currency": cur, "guest": True},
                           tags + ntags + atags, ow)
                elif r < 0.56:
                    e, etags, eown = x.email(typo=0.03)
                    if e:
                        E.emit(p, t2, "web", "newsletter_signup", {"email": e}, None, {"source": "popup"},
                               ["newsletter_email_only"] + etags, {"email": eown} if eown else None)
            elif kind == "app":
                dev, dtags, down = x.app_device()
                if not dev:
                    continue
                ow = {}
                own(ow, "device_id", down)
                logged = p.account_id and R.chance(0.75)
                ids = {"device_id": dev}
                if logged:
                    ids["account_id"] = p.account_id
                E.emit(p, t, "app", "app_open", ids, None, {"os": R.choice(["ios", "android"])},
                       dtags + ([] if logged else ["anonymous_session"]), ow)
                if logged and R.chance(0.35):
                    e, etags, _ = x.email(allow_family=False)
                    f, l, ntags = x.names(nick_rate=0.0)
                    aa, atags = x.addr_attrs()
                    amt, cur = amount(c)
                    order_no[0] += 1
                    E.emit(p, t + dt.timedelta(minutes=R.randint(1, 20)), "app", "purchase",
                           {"device_id": dev, "account_id": p.account_id, "email": e},
                           dict(first_name=f, last_name=l, **aa),
                           {"order_id": "A%d" % order_no[0], "amount": amt, "currency": cur},
                           dtags + etags + ntags + atags, ow)
            elif kind == "email":
                # ESP events: lower-cased addresses
                cands = []
                for s, e_, em in p.emails:
                    if s <= t < e_:
                        cands.append((em, []))
                    elif e_ <= t < getattr(p, "old_email_live_until", START):
                        cands.append((em, ["old_email"]))
                if p.hh.family_email and p in p.hh.family_email_users:
                    cands.append((p.hh.family_email, ["family_email"]))
                if not cands:
                    continue
                em, etags = R.choice(cands)
                if len(p.emails) > 1 and em == p.emails[1][2]:
                    etags = etags + ["new_email"]
                for j in range(R.choice([1, 1, 2, 3])):
                    E.emit(p, t + dt.timedelta(hours=j * R.randint(1, 30)), "email",
                           R.choice(["email_open", "email_open", "email_click", "email_delivered"]),
                           {"email": em.lower()}, None, {"campaign": "CMP-%03d" % R.randint(1, 140)},
                           ["esp_email_only"] + etags,
                           {"email": "household"} if "family_email" in etags else None)
            elif kind == "call_center":
                case_no[0] += 1
                cid = "C-%d" % case_no[0]
                ow = {}
                tags = []
                ids = {}
                withheld = R.chance(0.1)
                if not withheld:
                    ph, ptags, pown = x.phone("e164", landline_rate=0.45)
                    if not ph:
                        withheld = True
                    else:
                        ids["phone"] = ph
                        tags += ptags + ["caller_id"]
                        own(ow, "phone", pown)
                if withheld:
                    tags.append("withheld_number")
                    ph, ptags, pown = x.phone("typed", typo=0.05, placeholder=0.05, landline_rate=0.3)
                    if ph:
                        ids["phone"] = ph
                        tags += ptags
                        own(ow, "phone", pown)
                attrs = {}
                if R.chance(0.85):
                    f, l, ntags = x.names(nick_rate=0.4, typo=0.06)
                    attrs.update(first_name=f, last_name=l)
                    tags += ntags
                if R.chance(0.25):
                    e, etags, eown = x.email(typo=0.12, placeholder=0.02)
                    if e:
                        ids["email"] = e
                        tags += ["dictated_email"] + etags
                        own(ow, "email", eown)
                if R.chance(0.15):
                    cd, ctags, cown = x.card()
                    if cd:
                        ids["loyalty_id"] = R.choice([cd, " ".join(cd[i:i + 4] for i in range(0, 12, 4))])
                        tags += ctags
                        own(ow, "loyalty_id", cown)
                if R.chance(0.3):
                    a = p.address(t)
                    attrs["postcode"] = fmt_postcode(a)
                if R.chance(0.25):
                    d, dtags = x.dob(err=0.06)
                    attrs["date_of_birth"] = d
                    tags += dtags
                if not ids:
                    tags.append("no_identifier")
                E.emit(p, t, "call_center", "case_opened", ids, attrs,
                       {"case_id": cid, "reason": R.choice(["delivery", "return", "billing", "product", "account"])},
                       tags, ow)
                if R.chance(0.6) and "phone" in ids:
                    E.emit(p, t + dt.timedelta(hours=R.randint(1, 72)), "call_center", "case_resolved",
                           {"phone": ids["phone"]}, None, {"case_id": cid, "csat": R.randint(1, 5)},
                           [tg for tg in tags if tg in ("household_landline", "placeholder_phone", "phone_typo",
                                                        "recycled_number", "withheld_number", "old_landline")] +
                           ["phone_only"], {"phone": ow["phone"]} if "phone" in ow else None)
            elif kind == "store":
                ow = {}
                tags = []
                ids = {}
                attrs = {}
                r = R.random()
                cd, ctags, cown = x.card()
                etype = "store_purchase" if R.chance(0.9) else "store_return"
                if etype == "store_return":
                    f, l, ntags = x.names(nick_rate=0.25, typo=0.05, upper=R.chance(0.5))
                    aa, atags = x.addr_attrs(upper=R.chance(0.5))
                    attrs.update(first_name=f, last_name=l, **aa)
                    tags += ntags + atags + ["store_return"]
                    ph, ptags, pown = x.phone("pos", typo=0.03, placeholder=0.12, landline_rate=0.4)
                    if ph:
                        ids["phone"] = ph
                        tags += ptags
                        own(ow, "phone", pown)
                elif cd and r < 0.7:
                    ids["loyalty_id"] = cd
                    tags += ctags + ["card_scan"]
                    own(ow, "loyalty_id", cown)
                    if R.chance(0.6):
                        holder = p if cown is None else p.borrow_card_from
                        f, l, ntags = Ctx(holder, t).names(nick_rate=0.0, upper=True)
                        attrs.update(first_name=f, last_name=l)
                        tags += ["cardholder_name"] + ([] if holder is p else ["name_of_partner"]) + ntags
                else:
                    how = R.random()
                    if how < 0.5:
                        e, etags, eown = x.email(typo=0.1, placeholder=0.08)
                        if e:
                            ids["email"] = e
                            tags += ["ereceipt_keyed_email"] + etags
                            own(ow, "email", eown)
                    elif how < 0.85:
                        ph, ptags, pown = x.phone("pos", typo=0.04, placeholder=0.1, landline_rate=0.4)
                        if ph:
                            ids["phone"] = ph
                            tags += ["pos_phone_lookup"] + ptags
                            own(ow, "phone", pown)
                    if R.chance(0.5) or not ids:
                        a = p.address(t)
                        attrs["postcode"] = fmt_postcode(a)
                        if R.chance(0.6) or not ids:
                            f, l, ntags = x.names(nick_rate=0.3, typo=0.04, upper=True)
                            attrs.update(first_name=f, last_name=l)
                            tags += ntags
                    if not ids:
                        tags.append("no_identifier")
                amt, cur = amount(c)
                E.emit(p, t, "store", etype, ids, attrs,
                       {"store_id": "S%03d" % R.randint(1, 60), "amount": -amt if etype == "store_return" else amt,
                        "currency": cur}, tags, ow)
            elif kind == "loyalty":
                cd, ctags, cown = x.card()
                if not cd:
                    continue
                E.emit(p, t, "loyalty", R.choice(["points_earned", "points_redeemed", "tier_changed"]),
                       {"loyalty_id": cd}, None, {"points": R.randint(10, 900)},
                       ctags + ["card_only"], {"loyalty_id": cown} if cown else None)
            elif kind == "enrol":
                ow = {}
                cd = p.cards[0][2]
                instore = R.chance(0.6)
                e, etags, eown = x.email(typo=0.08 if instore else 0.02, placeholder=0.06 if instore else 0.0)
                ph, ptags, pown = x.phone("pos" if instore else "typed", typo=0.03 if instore else 0.01,
                                          placeholder=0.05 if instore else 0.0, landline_rate=0.25)
                f, l, ntags = x.names(nick_rate=0.15, typo=0.03 if instore else 0.0)
                aa, atags = x.addr_attrs()
                d, dtags = x.dob(err=0.05, placeholder=0.02 if instore else 0.0)
                own(ow, "email", eown)
                own(ow, "phone", pown)
                E.emit(p, t, "loyalty", "enrollment", {"loyalty_id": cd, "email": e, "phone": ph},
                       dict(first_name=f, last_name=l, date_of_birth=d, **aa),
                       {"enrolled_at": "store" if instore else "web"},
                       ["enrollment", "staff_keyed" if instore else "self_keyed"] + etags + ptags + ntags + atags +
                       dtags, ow)
            elif kind == "reissue":
                cd = p.cards[1][2]
                r = R.random()
                ow = {}
                ids = {"loyalty_id": cd}
                attrs = {}
                tags = ["reissued_card", "card_reissued_event"]
                if r < 0.6:
                    e, etags, eown = x.email(allow_family=True)
                    ids["email"] = e
                    tags += etags
                    own(ow, "email", eown)
                elif r < 0.8:
                    ph, ptags, pown = x.phone("pos", landline_rate=0.3)
                    ids["phone"] = ph
                    tags += ptags
                    own(ow, "phone", pown)
                if r >= 0.6 or R.chance(0.5):
                    f, l, ntags = x.names(nick_rate=0.1, upper=True)
                    a = p.address(t)
                    attrs.update(first_name=f, last_name=l, postcode=fmt_postcode(a))
                    tags += ntags
                if len([v for v in ids.values() if v]) == 1:
                    tags.append("reissue_without_contact")
                E.emit(p, t, "loyalty", "card_reissued", ids, attrs, {"reason": "lost"}, tags, ow)
            elif kind in ("profile_update_marriage", "profile_update_move"):
                cd, ctags, _ = x.card()
                if not cd:
                    continue
                e, etags, eown = x.email(allow_family=False)
                f, l, ntags = x.names(nick_rate=0.0)
                aa, atags = x.addr_attrs()
                E.emit(p, t, "loyalty", "profile_updated", {"loyalty_id": cd, "email": e},
                       dict(first_name=f, last_name=l, **aa), {"change": kind.split("_")[-1]},
                       ["profile_update"] + ctags + etags + ntags + atags)
            elif kind == "chat":
                ow = {}
                tags = []
                ids = {}
                attrs = {}
                r = R.random()
                if p.social and r < 0.3:
                    ids["social_handle"] = p.social
                    f, _, ntags = x.names(nick_rate=0.5)
                    attrs["first_name"] = f
                    tags += ["social_chat"] + ntags
                else:
                    ck, ctags, cown = x.cookie()
                    if ck and R.chance(0.5):
                        ids["device_id"] = ck
                        tags += ctags
                        own(ow, "device_id", cown)
                    e, etags, eown = x.email(typo=0.05)
                    if e and R.chance(0.8):
                        ids["email"] = e
                        tags += etags
                        own(ow, "email", eown)
                    f, l, ntags = x.names(nick_rate=0.4)
                    attrs["first_name"] = f
                    if R.chance(0.5):
                        attrs["last_name"] = l
                    tags += ["web_chat"] + ntags
                cid = "CH-%d" % R.randint(10 ** 6, 10 ** 7)
                ev = E.emit(p, t, "chat", "chat_started", ids, attrs, {"chat_id": cid}, tags, ow)
                if ev and ids and R.chance(0.5):
                    E.emit(p, t + dt.timedelta(minutes=R.randint(3, 40)), "chat", "chat_ended", dict(ids), None,
                           {"chat_id": cid, "csat": R.randint(1, 5)}, tags, ow)
    return E.events


def write_corpus(directory: str, people: int = 3000, seed: int = 20250607) -> dict:
    """Writes the corpus of ``people`` people drawn with ``seed`` into ``directory``; returns counts."""
    R.seed(seed)
    os.makedirs(directory, exist_ok=True)
    households, people = build_population(people)
    events = gen_events(people)
    events.sort(key=lambda e: e["_t"])
    # the people who produced no event are not customers of record
    seen = set()
    with open(os.path.join(directory, "events.jsonl"), "w") as fe, \
            open(os.path.join(directory, "truth.csv"), "w", newline="") as ft, \
            open(os.path.join(directory, "annotations.jsonl"), "w") as fa:
        tw = csv.writer(ft)
        tw.writerow(["event_id", "person_id"])
        ctry = {p.pid: p.country for p in people}
        for i, ev in enumerate(events):
            ann = ev.pop("_ann")
            t = ev.pop("_t")
            eid = "%s-%07d" % ({"web": "wb", "app": "ap", "email": "esp", "call_center": "cc", "store": "pos",
                                "loyalty": "loy", "chat": "ch"}[ev["channel"]], i + 1)
            out = {"event_id": eid, "occurred_at": fmt_time(t, ctry[ann["person_id"]])}
            out.update(ev)
            line = json.dumps(out, ensure_ascii=False)
            fe.write(line + "\n")
            if R.chance(0.003):  # a re-sent duplicate, as at-least-once delivery does
                fe.write(line + "\n")
            tw.writerow([eid, ann["person_id"]])
            ann["event_id"] = eid
            fa.write(json.dumps(ann, ensure_ascii=False) + "\n")
            seen.add(ann["person_id"])
    with open(os.path.join(directory, "people.jsonl"), "w") as fp:
        for p in people:
            d = {"person_id": p.pid, "household_id": p.hh.hid, "country": p.country, "city": p.hh.city_info[0],
                 "first": p.first, "nicks": p.nicks, "surnames": [s for _, _, s in p.surnames],
                 "dob": p.dob.isoformat(), "role": p.role, "sex": p.sex, "profile": p.profile,
                 "tags": sorted(set(p.tags)), "relation": p.relation, "household_tags": p.hh.tags,
                 "emails": [e for _, _, e in p.emails], "work_email": p.work_email,
                 "mobiles": [m for _, _, m in p.mobiles], "landlines": [l for _, _, l in p.hh.landlines],
                 "cards": [c for _, _, c in p.cards], "account_id": p.account_id,
                 "family_email": p.hh.family_email if p in p.hh.family_email_users else None,
                 "tablet": p.hh.tablet if p in p.hh.tablet_users else None, "has_events": p.pid in seen}
            fp.write(json.dumps(d, ensure_ascii=False) + "\n")
    return {"people": len(people), "with_events": len(seen), "households": len(households), "events": len(events)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=20250607)
    ap.add_argument("--out", default="data")
    args = ap.parse_args()
    counts = write_corpus(args.out, args.people, args.seed)
    print("people %(people)d (with events %(with_events)d), households %(households)d, events %(events)d" % counts)



if __name__ == "__main__":
    main()
