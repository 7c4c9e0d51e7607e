"""Personal data in the decision log, sealed under keys per data subject (crypto-shredding).

What the resolver decides is plain; what is *written* is sealed here, at the boundary of the log (the
embedded log's files, the decision-log topic), and unsealed when read back:

* every identifier (node key ``type:value``) is written ``type:~KID.CIPHERTEXT``: its value encrypted under
  the key of that identifier (AES-256-GCM; one key per identifier, so one plaintext per key);
* an event's content (attributes, payload, the identifiers it could not use), a rejected record's text and
  the person a merge was carried by are written as one ``sealed`` field: ``~KID.NONCE+CIPHERTEXT`` under the
  key of that event (or rejected record);
* inside it, an identifier's value as written (``read``) is sealed again under that identifier's key, and each
  value the event could not use (``ignored``) under a key of its own (``unusable_subject``): either may read as
  another customer's identifier later, and is erased with that identifier, not with the event.

Erasure deletes keys (``streams.keys``). Read back, an identifier whose key is gone is the placeholder
``type:erased~KID`` (the same one everywhere it appears, so the graph keeps its shape until the ``erased``
decision removes it), and a decision whose content key is gone comes back without that content and with
``"erased": true``. Types, times, channels, event IDs, profile IDs, rules and weights stay readable: they say
nothing about a person once the identifiers and contents cannot be read.

An entry written sealed says so (``"k": 1`` beside its ``seq``); entries without it are read as written.
"""

from __future__ import annotations

import binascii
import os
import re
from typing import Any, Callable, Optional

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from resolver.errors import IdresError
from resolver.ids import ERASED
from streams.keys import KeyStore

ZERO_NONCE = bytes(12)  # a node key is the only plaintext its key ever seals: a fixed nonce is safe
CACHE = 200_000


# key IDs in sealed bytes: identifiers (``type:~KID.…``) and contents (``~KID.…``)
KID = re.compile(rb'~([A-Za-z0-9_-]{12})\.')


def event_subject(event_id: str) -> str:
    return "e:" + event_id


def rejected_subject(key: str) -> str:
    return "r:" + key


def node_subject(node_key: str) -> str:
    return "n:" + node_key


def unusable_subject(id_type: str, raw: str) -> str:
    """The subject of a value an event gave that it could not use (``ignored``): each is sealed under a key of
    its own with this subject, so that erasing the identifier it reads as later (a number of a country learned
    since) erases it wherever it was given, without the rest of those events."""
    return f"u:{id_type}:{raw}"


def erasure_subjects(erased: dict[str, Any]) -> list[str]:
    """The subjects whose keys a ``customer_erased`` decision shreds: its identifiers, events, rejected records
    and the unusable values that read as its identifiers."""
    return [*(unusable_subject(u["type"], u["raw"]) for u in erased.get("unusable", ()) if not u.get("erased")),
            *map(node_subject, erased["nodes"]), *map(event_subject, erased["events"]),
            *map(rejected_subject, erased["rejected"])]


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64(text)


def erased_node(node_type: str, kid: str) -> str:
    """What an identifier whose key was shredded reads as."""
    return f"{node_type}:{ERASED}{kid}"


def node_kid(token: str) -> Optional[str]:
    """The key ID an identifier as written (``type:~KID.CIPHERTEXT``) is sealed under; None if not sealed."""
    rest = token.partition(":")[2]
    return rest[1:].partition(".")[0] if rest.startswith("~") else None


def is_erased(node_key: str) -> bool:
    return node_key.partition(":")[2].startswith(ERASED)


# decisions whose only personal data are identifiers: (single fields, lists)
NODE_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "profile_created": ((), ("nodes",)), "identifiers_attached": ((), ("nodes",)),
    "identifiers_linked": ((), ("nodes",)),
    "link_refused": (("node",), ("others",)), "events_attributed": (("node", "via"), ()),
    "probable_link": (("node", "other"), ()), "possible_match": (("node", "other"), ()),
    "connection_banned": ((), ("nodes", "others")),
    "log_restate_part": ((), ("nodes",)),
}


class Sealer:
    """Seals decisions for writing and unseals them when read, with keys from ``keys``."""

    def __init__(self, keys: KeyStore):
        self.keys = keys
        self._tokens: dict[str, str] = {}  # node key -> token
        self._nodes: dict[str, str] = {}  # token -> node key
        # (what seals and unseals each decision type is the module's, ``_SEAL`` and ``_UNSEAL``: tables of this
        # sealer's own bound methods made it a reference cycle, freed only by the cyclic collector, which a server
        # keeps off what it has loaded (``gc.freeze``): each log a reload replaced stayed in memory)

    # ------------------------------------------------------------------------------------ entries
    def seal_entry(self, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The decisions as written: copies, with identifiers and contents sealed."""
        table = _SEAL
        return [table[d["type"]](self, d) if d["type"] in table else d for d in decisions]

    def unseal_entry(self, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Decisions as read back (changed in place and returned)."""
        table = _UNSEAL
        return [table[d["type"]](self, d) if d["type"] in table else d for d in decisions]

    def prefetch(self, written: bytes) -> None:
        """Fetches at once the keys of every sealed value in ``written`` (log lines, a topic message), where the
        store can (``prefetch``): a reader about to unseal many entries."""
        prefetch = getattr(self.keys, "prefetch", None)
        if prefetch is not None:
            prefetch(kid.decode() for kid in KID.findall(written))

    def flush(self) -> None:
        self.keys.flush()

    def forget(self) -> None:
        """Drops every key and token held in memory (after an erasure)."""
        self._tokens.clear()
        self._nodes.clear()
        forget = getattr(self.keys, "forget", None)
        if forget is not None:
            forget()

    # ------------------------------------------------------------------------------------ primitives
    def _cipher(self, kid: str, key: bytes) -> AESGCM:
        # (not kept: most keys seal one event, and an identifier's token is kept instead)
        return AESGCM(key)

    def _cipher_of(self, kid: str) -> Optional[AESGCM]:
        key = self.keys.key(kid)
        return AESGCM(key) if key is not None else None

    def node(self, node_key: str) -> str:
        """A node key as written."""
        token = self._tokens.get(node_key)
        if token is None:
            t, _, value = node_key.partition(":")
            kid, key = self.keys.key_of(node_subject(node_key))
            ct = self._cipher(kid, key).encrypt(ZERO_NONCE, value.encode("utf-8", "surrogatepass"), t.encode())
            token = f"{t}:~{kid}.{_b64(ct)}"
            if len(self._tokens) >= CACHE:
                self._tokens.clear()
                self._nodes.clear()
            self._tokens[node_key] = token
            self._nodes[token] = node_key
        return token

    def read_node(self, token: str) -> str:
        """A node key as read back (a placeholder once its key is shredded)."""
        plain = self._nodes.get(token)
        if plain is not None:
            return plain
        t, _, rest = token.partition(":")
        if not rest.startswith("~"):
            return token
        kid, _, ct = rest[1:].partition(".")
        cipher = self._cipher_of(kid)
        if cipher is None:
            return erased_node(t, kid)  # (not cached: it reads so only while the key stays shredded)
        try:
            plain = t + ":" + cipher.decrypt(ZERO_NONCE, _unb64(ct), t.encode()).decode("utf-8", "surrogatepass")
        except (InvalidTag, ValueError):
            raise SealError(f"an identifier in the decision log does not match its key ({t}:~{kid})") from None
        if len(self._nodes) >= CACHE:
            self._nodes.clear()
        self._nodes[token] = plain
        return plain

    def _nodes_of(self, keys: list[str]) -> list[str]:
        node = self.node
        return [node(k) for k in keys]

    def _read_nodes(self, keys: list[str]) -> list[str]:
        read = self.read_node
        return [read(k) for k in keys]

    def content(self, subject: str, fields: dict[str, Any], new: bool = False) -> str:
        kid, key = self.keys.key_of(subject, new=new)
        nonce = os.urandom(12)
        return f"~{kid}.{_b64(nonce + self._cipher(kid, key).encrypt(nonce, orjson.dumps(fields), None))}"

    def read_content(self, sealed: str) -> Optional[dict[str, Any]]:
        """The fields sealed, or None once their key is shredded."""
        kid, _, blob = sealed[1:].partition(".")
        cipher = self._cipher_of(kid)
        if cipher is None:
            return None
        try:
            data = _unb64(blob)
            return orjson.loads(cipher.decrypt(data[:12], data[12:], None))
        except (InvalidTag, ValueError):
            raise SealError(f"a sealed content in the decision log does not match its key ({kid})") from None

    # ------------------------------------------------------------------------------------ by decision type
    def _seal_interaction(self, d: dict[str, Any]) -> dict[str, Any]:
        out = {**d, "nodes": self._nodes_of(d["nodes"])}
        if "refused" in d:
            out["refused"] = self._nodes_of(d["refused"])
        if "attributed" in d:
            a = d["attributed"]
            out["attributed"] = {**a, "node": self.node(a["node"]), "via": self.node(a["via"])}
        fields = {k: out.pop(k) for k in ("attributes", "payload", "ignored", "read") if k in out}
        if "read" in fields:  # (an identifier's value as written: under the identifier's key, as the identifier)
            of_type = {k.partition(":")[0]: k for k in d["nodes"]}
            fields["read"] = [self._written(of_type.get(r["type"]), r) for r in fields["read"]]
        if "ignored" in fields:
            fields["ignored"] = [{**{k: v for k, v in i.items() if k != "raw"}, "sealed": self._unusable(i["type"], i["raw"])}
                                 for i in fields["ignored"]]
        if fields:
            out["sealed"] = self.content(event_subject(d["event_id"]), fields, new=True)
        return out

    def _written(self, node: Optional[str], read: dict[str, Any]) -> dict[str, Any]:
        """An identifier as written, read through a learned format into ``node``: its raw value sealed under
        that identifier's key (a random nonce: the key's other plaintext is the identifier), so that erasing
        the identifier erases it, whoever else the event belongs to."""
        if node is None:
            return read
        return {"type": read["type"], "sealed": self.content(node_subject(node), {"raw": read["raw"]})}

    def _unusable(self, id_type: str, raw: str) -> str:
        """A value an event could not use, as written: sealed under a key of its own (``unusable_subject``)."""
        return self.content(unusable_subject(id_type, raw), {"raw": raw}, new=True)

    def _usable_again(self, item: dict[str, Any]) -> dict[str, Any]:
        """An unusable value (``ignored``, or an erasure's ``unusable``) as read back: its raw value in place, or
        empty with ``"erased": true`` once its key is shredded (written before version 9: as it is)."""
        sealed = item.pop("sealed", None)
        if sealed is None:
            return item
        fields = self.read_content(sealed)
        if fields is None:
            item["raw"], item["erased"] = "", True
        else:
            item["raw"] = fields["raw"]
        return item

    def _seal_erased(self, d: dict[str, Any]) -> dict[str, Any]:
        out = {**d, "nodes": self._nodes_of(d["nodes"])}
        if "unusable" in d:
            out["unusable"] = [{"type": u["type"], "sealed": self._unusable(u["type"], u["raw"])} for u in d["unusable"]]
        return out

    def _unseal_erased(self, d: dict[str, Any]) -> dict[str, Any]:
        d["nodes"] = self._read_nodes(d["nodes"])
        if "unusable" in d:
            d["unusable"] = [self._usable_again(u) for u in d["unusable"]]
        return d

    def _unseal_interaction(self, d: dict[str, Any]) -> dict[str, Any]:
        d["nodes"] = self._read_nodes(d["nodes"])
        if "refused" in d:
            d["refused"] = self._read_nodes(d["refused"])
        if "attributed" in d:
            a = d["attributed"]
            a["node"] = self.read_node(a["node"])
            a["via"] = self.read_node(a["via"])
        return self._open(d)

    def _seal_merged(self, d: dict[str, Any]) -> dict[str, Any]:
        out = {**d, "via": self._nodes_of(d["via"])}
        ev = d.get("evidence")
        if ev:
            ev = {**ev}
            if "weak" in ev:
                ev["weak"] = self._nodes_of(ev["weak"])
            if "person" in ev:
                ev["person"] = [self.content(event_subject(d["event_id"]), {"person": ev["person"]}, new=True)]
            out["evidence"] = ev
        return out

    def _unseal_merged(self, d: dict[str, Any]) -> dict[str, Any]:
        d["via"] = self._read_nodes(d["via"])
        ev = d.get("evidence")
        if ev:
            if "weak" in ev:
                ev["weak"] = self._read_nodes(ev["weak"])
            if "person" in ev:
                fields = self.read_content(ev["person"][0])
                ev["person"] = fields["person"] if fields is not None else []
        return d

    def _seal_flagged(self, d: dict[str, Any]) -> dict[str, Any]:
        out = {**d, "node": self.node(d["node"])}
        ev = d.get("evidence")
        if ev:
            out["evidence"] = {k: (self._nodes_of(v) if _node_list(k, v) else v) for k, v in ev.items()}
        return out

    def _unseal_flagged(self, d: dict[str, Any]) -> dict[str, Any]:
        d["node"] = self.read_node(d["node"])
        ev = d.get("evidence")
        if ev:
            for k, v in ev.items():
                if _node_list(k, v):
                    ev[k] = self._read_nodes(v)
        return d

    def _seal_split(self, d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "parts": [{**p, "nodes": self._nodes_of(p["nodes"])} for p in d["parts"]]}

    def _unseal_split(self, d: dict[str, Any]) -> dict[str, Any]:
        for p in d["parts"]:
            p["nodes"] = self._read_nodes(p["nodes"])
        return d

    def _seal_rejected(self, d: dict[str, Any]) -> dict[str, Any]:
        out = dict(d)
        fields = {k: out.pop(k) for k in ("raw", "detail") if k in out}
        out["raw"] = ""
        out["sealed"] = self.content(rejected_subject(d["key"]), fields, new=True)
        return out

    def _unseal_rejected(self, d: dict[str, Any]) -> dict[str, Any]:
        return self._open(d)

    def _open(self, d: dict[str, Any]) -> dict[str, Any]:
        """A decision's sealed content put back in its place (``"erased": true`` once its key is shredded)."""
        sealed = d.pop("sealed", None)
        if sealed is not None:
            fields = self.read_content(sealed)
            if fields is None:
                d["erased"] = True
            else:
                d.update(fields)
                if "read" in fields:
                    d["read"] = [r for r in map(self._as_written, fields["read"]) if r is not None]
                if "ignored" in fields:
                    d["ignored"] = [self._usable_again(i) for i in fields["ignored"]]
        return d

    def _as_written(self, read: dict[str, Any]) -> Optional[dict[str, Any]]:
        """An identifier as written (``_written``), or None once the identifier's key is shredded."""
        if "sealed" not in read:
            return read
        fields = self.read_content(read["sealed"])
        return None if fields is None else {"type": read["type"], "raw": fields["raw"]}


def _node_list(key: str, value: Any) -> bool:
    """Whether a flag's evidence item lists identifiers (``{"phone": ["phone:+44…", …]}``)."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, str) and v.startswith(key + ":") for v in value)


class SealError(IdresError):
    pass


def _sealer_of(one: tuple[str, ...], many: tuple[str, ...]) -> Callable[[Sealer, dict[str, Any]], dict[str, Any]]:
    """Seals the identifier fields ``one`` and the lists of identifiers ``many`` of a decision."""

    def seal(sealer: Sealer, d: dict[str, Any]) -> dict[str, Any]:
        node, nodes_of = sealer.node, sealer._nodes_of
        out = dict(d)
        for f in one:
            out[f] = node(d[f])
        for f in many:
            out[f] = nodes_of(d[f])
        return out

    return seal


def _unsealer_of(one: tuple[str, ...], many: tuple[str, ...]) -> Callable[[Sealer, dict[str, Any]], dict[str, Any]]:
    """Reads back what ``_sealer_of`` sealed."""

    def unseal(sealer: Sealer, d: dict[str, Any]) -> dict[str, Any]:
        read, read_nodes = sealer.read_node, sealer._read_nodes
        for f in one:
            d[f] = read(d[f])
        for f in many:
            d[f] = read_nodes(d[f])
        return d

    return unseal


# what seals and unseals each decision type (see ``Sealer.__init__``)
_SEAL: dict[str, Callable[[Sealer, dict[str, Any]], dict[str, Any]]] = {
    "interaction_recorded": Sealer._seal_interaction, "profiles_merged": Sealer._seal_merged,
    "identifier_flagged": Sealer._seal_flagged, "profile_split": Sealer._seal_split,
    "event_rejected": Sealer._seal_rejected, "customer_erased": Sealer._seal_erased,
    **{t: _sealer_of(*fields) for t, fields in NODE_FIELDS.items()},
}
_UNSEAL: dict[str, Callable[[Sealer, dict[str, Any]], dict[str, Any]]] = {
    "interaction_recorded": Sealer._unseal_interaction, "profiles_merged": Sealer._unseal_merged,
    "identifier_flagged": Sealer._unseal_flagged, "profile_split": Sealer._unseal_split,
    "event_rejected": Sealer._unseal_rejected, "customer_erased": Sealer._unseal_erased,
    **{t: _unsealer_of(*fields) for t, fields in NODE_FIELDS.items()},
}
