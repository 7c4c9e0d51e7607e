"""Nicknames and phonetic keys: which first names are one name (Bob / Robert), and Soundex.

The nickname groups merge our own list with the ``nicknames`` package's ``names.csv``;
``NICKNAMES_DIGEST`` is a digest of that package data (decisions depend on it, so the engine's state
format includes it).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Optional

from resolver.matching.canonical import canonical_name

# Each group: the formal name first, then its common short forms. A name may sit in several groups.
# These are merged with the nicknames package's hand-curated list (English names; Apache-2.0).
_OWN_NICKNAME_GROUPS: tuple[tuple[str, ...], ...] = (
    ("robert", "bob", "bobby", "rob", "robbie", "bert"),
    ("william", "bill", "billy", "will", "willy", "liam"),
    ("richard", "rick", "ricky", "rich", "dick"),
    ("elizabeth", "elisabeth", "liz", "lizzie", "beth", "betty", "eliza", "libby"),
    ("margaret", "maggie", "meg", "peggy", "marge", "greta"),
    ("james", "jim", "jimmy", "jamie"),
    ("john", "jon", "johnny", "jack"),
    ("jonathan", "jon", "jonny"),
    ("michael", "mike", "mick", "mickey", "mikey"),
    ("katherine", "catherine", "kathryn", "kate", "katie", "kathy", "cathy", "kat"),
    ("thomas", "tom", "tommy"),
    ("anthony", "tony"),
    ("christopher", "chris", "kit"),
    ("christine", "christina", "chris", "tina"),
    ("alexander", "alex", "sandy", "xander"),
    ("alexandra", "alex", "sandra", "sandy", "lexi"),
    ("edward", "ed", "eddie", "ted", "ned"),
    ("daniel", "dan", "danny"),
    ("david", "dave", "davy"),
    ("joseph", "joe", "joey"),
    ("samuel", "sam", "sammy"),
    ("samantha", "sam", "sammy"),
    ("benjamin", "ben", "benny"),
    ("nicholas", "nick", "nicky"),
    ("matthew", "matt"),
    ("andrew", "andy", "drew"),
    ("stephen", "steven", "steve"),
    ("patrick", "pat", "paddy"),
    ("patricia", "pat", "patty", "trish"),
    ("susan", "sue", "susie"),
    ("deborah", "debbie", "deb"),
    ("jennifer", "jen", "jenny"),
    ("rebecca", "becky", "becca"),
    ("victoria", "vicky", "tori"),
    ("charles", "charlie", "chuck"),
    ("henry", "harry", "hank"),
    ("peter", "pete"),
    ("timothy", "tim"),
    ("gregory", "greg"),
    ("jacob", "jake"),
    ("joshua", "josh"),
    ("zachary", "zach", "zack"),
    ("frederick", "fred", "freddie"),
    ("francis", "frank"),
    ("abigail", "abby"),
    ("michelle", "shell", "shelly", "chelle", "mich"),
    ("rebekah", "becky", "becca", "bekah"),
    ("isabel", "isabella", "izzy", "isa", "bella", "belle"),
    # Spanish and Portuguese hypocoristics, which share few letters with the name
    ("francisco", "paco", "pancho", "curro", "fran", "quico", "chico"),
    ("jose", "pepe", "pepito", "chema", "josema"),
    ("jesus", "chus", "chucho", "chuy"),
    ("antonio", "tono", "toni", "tonio", "nono"),
    ("ignacio", "nacho"),
    ("enrique", "quique", "kike"),
    ("manuel", "manolo", "manu", "lolo"),
    ("alejandro", "alejo", "jandro", "alex"),
    ("guillermo", "memo", "guille"),
    ("eduardo", "edu", "lalo"),
    ("federico", "fede", "kiko"),
    ("dolores", "lola", "loles"),
    ("concepcion", "concha", "conchi", "conchita"),
    ("rosario", "charo", "chayo"),
    ("mercedes", "merche", "meche"),
    ("pilar", "pili"),
    ("guadalupe", "lupe", "lupita"),
    ("consuelo", "chelo"),
    ("soledad", "sole", "chole"),
    ("graciela", "chela"),
    ("josefa", "pepa", "pepita", "fina"),
    ("joao", "jao"),
    # Italian, German, French
    ("giuseppe", "beppe", "peppe", "pino"),
    ("giovanni", "gianni", "nanni", "vanni"),
    ("francesco", "checco", "cesco"),
    ("johann", "hans"),
    ("johannes", "hans", "jo"),
    ("margarethe", "grete", "gretchen", "gretel"),
    ("wolfgang", "wolf"),
    ("jean baptiste", "jb"),
    # Irish names and their anglicized spellings
    ("caoimhe", "keeva", "kiva"),
    ("niamh", "neve", "neeve", "neave"),
    ("siobhan", "shivaun", "shevaun"),
    ("aoife", "eefa", "eva"),
    ("sean", "shaun", "shawn"),
    ("padraig", "patrick", "paddy"),
    ("seamus", "james", "shay"),
)


def _nickname_groups() -> tuple[tuple[tuple[str, ...], ...], str]:
    """Our groups merged with the ``nicknames`` package's ``names.csv`` (formal name -> nicknames),
    one group per formal name, sorted; and a digest of the package data (it is part of what decisions
    depend on, so the engine's state format includes it)."""
    from importlib.resources import files

    data = files("nicknames").joinpath("names.csv").read_bytes()
    merged: dict[str, set[str]] = {}
    for group in _OWN_NICKNAME_GROUPS:
        merged.setdefault(group[0], set()).update(group[1:])
    for line in data.decode("utf-8").splitlines()[1:]:
        parts = line.strip().split(",")
        if len(parts) != 3 or parts[1] != "has_nickname":
            continue
        formal, nick = canonical_name(parts[0]), canonical_name(parts[2])
        if formal and nick and formal != nick:
            merged.setdefault(formal, set()).add(nick)
    groups = tuple((formal, *sorted(nicks - {formal})) for formal, nicks in sorted(merged.items()))
    return groups, hashlib.sha256(data).hexdigest()[:12]


NICKNAME_GROUPS, NICKNAMES_DIGEST = _nickname_groups()

_NICK_INDEX: dict[str, tuple[int, ...]] = {}
for _gid, _group in enumerate(NICKNAME_GROUPS):
    for _name in _group:
        _NICK_INDEX[_name] = _NICK_INDEX.get(_name, ()) + (_gid,)


def nickname_equivalent(a: str, b: str) -> bool:
    """True when two canonical first names share a nickname group (Bob / Robert)."""
    ga = _NICK_INDEX.get(a)
    gb = _NICK_INDEX.get(b)
    return bool(ga and gb and set(ga).intersection(gb))


_SOUNDEX_CODES = {
    **dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"), **dict.fromkeys("dt", "3"),
    "l": "4", **dict.fromkeys("mn", "5"), "r": "6",
}


@lru_cache(maxsize=1 << 14)  # (names repeat: a few thousand make most of any customer base)
def soundex(name: Optional[str]) -> Optional[str]:
    """American Soundex of a canonical name (``"smith"``, ``"smyth"`` -> ``"S530"``); spaces ignored."""
    if not name:
        return None
    letters = [c for c in name if "a" <= c <= "z"]
    if not letters:
        return None
    out = [letters[0].upper()]
    last = _SOUNDEX_CODES.get(letters[0], "")
    for c in letters[1:]:
        code = _SOUNDEX_CODES.get(c, "")
        if code and code != last:
            out.append(code)
            if len(out) == 4:
                break
        if c not in "hw":  # h and w do not separate equal codes; vowels do
            last = code
    return "".join(out).ljust(4, "0")
