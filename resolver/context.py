"""What the stages of deciding share: the configuration, the match model, the state, and the sink that
every decision goes through (applied by the fold at once, so the next step sees it, and collected)."""

from __future__ import annotations

from typing import Any

from resolver.config import ResolverConfig
from resolver.fold import Fold
from resolver.ids import RECORD_PRIORITY, RECORD_TYPE
from resolver.matching import MatchModel
from resolver.records import RecordMaker
from resolver.state import ResolverState


class Context:
    __slots__ = ("config", "state", "model", "model_id", "fold", "records", "out", "_priority")

    def __init__(self, config: ResolverConfig, state: ResolverState, model: MatchModel, fold: Fold,
                 records: RecordMaker) -> None:
        self.config = config
        self.state = state
        self.model = model
        self.model_id = f"{model.version}/{model.fingerprint()}"
        self.fold = fold
        self.records = records
        self.out: list[dict[str, Any]] = []
        self._priority: dict[str, int] = {}

    def emit(self, decision: dict[str, Any]) -> None:
        self.fold.apply(decision)
        self.out.append(decision)

    def take(self) -> list[dict[str, Any]]:
        """The decisions emitted since the last call."""
        out, self.out = self.out, []
        return out

    def priority(self, id_type: str) -> int:
        p = self._priority.get(id_type)
        if p is None:
            p = RECORD_PRIORITY if id_type == RECORD_TYPE else self.config.rule(id_type).priority
            self._priority[id_type] = p
        return p
