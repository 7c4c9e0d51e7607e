"""Values kept as compact JSON text, decoded when read (``json_text``, ``TextRows``).

For a long list of small dicts written once and read seldom (the merges the views keep, read by ``explain`` and
the snapshot): one string a row instead of a dict, its lists and their strings, each an object that memory and a
checkpoint's pickler count (at 1.8 million events of the CRM corpus, the merges were 650,000 of the 2.8 million
objects the views' pickler remembered, and its table doubles past two thirds of 4,194,304). A row reads back
equal to what was appended, as JSON gives it (a tuple as a list).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import orjson


def json_text(value: Any) -> str:
    """``value`` as compact JSON text, to be kept: text, not the bytes ``orjson.dumps`` returns, each of which keeps
    the 4 KiB buffer it was written in (135,000 reviews kept as those bytes took 530 MiB, as text 61 MiB)."""
    return orjson.dumps(value).decode()


class TextRows:
    """A list of dicts, each kept as compact JSON text: ``append``, ``len``, ``rows[i]`` and iteration (a fresh
    dict each time: changing it changes nothing kept)."""

    __slots__ = ("texts",)

    def __init__(self, texts: Optional[list[str]] = None) -> None:
        if texts is not None and (type(texts) is not list or not all(type(t) is str for t in texts)):
            raise TypeError("TextRows are made of a list of strings")  # (a checkpoint read back: nothing else)
        self.texts: list[str] = texts if texts is not None else []

    def append(self, row: dict[str, Any]) -> None:
        self.texts.append(json_text(row))

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return orjson.loads(self.texts[i])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(orjson.loads, self.texts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextRows) and self.texts == other.texts

    def __repr__(self) -> str:
        return f"TextRows({len(self.texts)} rows)"

    def __reduce__(self) -> Any:
        return TextRows, (self.texts,)
