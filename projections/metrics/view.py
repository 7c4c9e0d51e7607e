"""One metric view: a name, what it answers, and its SQL over the snapshot's tables."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    name: str
    doc: str  # one sentence: what a row is and what the view answers
    sql: str  # a SELECT over the snapshot's tables and the views before it

    def create(self, con) -> None:
        con.execute(f"CREATE VIEW {self.name} AS {self.sql}")
        con.execute(f"COMMENT ON VIEW {self.name} IS '{self.doc.replace(chr(39), chr(39) * 2)}'")
