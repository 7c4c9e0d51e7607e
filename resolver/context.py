"""What the stages of deciding share: the configuration, the match model, the state, and the sink that
every decision goes through (applied by the fold at once, so the next step sees it, and collected)."""

from __future__ import annotations

from typing import Any, Optional

from resolver.config import ResolverConfig
from resolver.fold import Fold
from resolver.ids import RECORD_PRIORITY, RECORD_TYPE
from resolver.matching import MatchModel
from resolver.matching.estimation import Mapper, in_order
from resolver.records import RecordMaker
from resolver.state import ResolverState


class Context:
    __slots__ = ("config", "state", "base_model", "calibrating", "fold", "records", "out", "_priority",
                 "_named", "_model_id", "_tf", "_tf_stamp", "mapper")

    def __init__(self, config: ResolverConfig, state: ResolverState, model: MatchModel, fold: Fold,
                 records: RecordMaker) -> None:
        self.config = config
        self.state = state
        self.base_model = model  # the configured (or shipped) model
        # whether the model is re-estimated from the data (``resolver.calibration``)
        self.calibrating = config.calibrating
        # how re-estimating runs its parts that split into chunks (``estimation.in_order``: here, in order; a
        # driver may hand them to others, with the same result)
        self.mapper: Mapper = in_order
        self._named: Optional[MatchModel] = None
        self._model_id = ""
        self.fold = fold
        self.records = records
        self.out: list[dict[str, Any]] = []
        self._priority: dict[str, int] = {}
        # frequency adjustments by (field, value, postcode agrees), for one state, epoch and model: they
        # read the counts as they stood at the start of the epoch, so they do not change within it
        self._tf: dict[tuple[str, str, bool], float] = {}
        self._tf_stamp: Optional[tuple[Any, int, Any]] = None

    @property
    def model(self) -> MatchModel:
        """The model events are scored under: the last one estimated from the data, else the configured one."""
        estimated = self.state.model
        return self.base_model if estimated is None or not self.calibrating else estimated

    @property
    def model_id(self) -> str:
        """The model's version and fingerprint, as decisions name it."""
        model = self.model
        if model is not self._named:
            self._named = model
            self._model_id = f"{model.version}/{model.fingerprint()}"
        return self._model_id

    def frequency_cache(self) -> dict[tuple[str, str, bool], float]:
        """The frequency adjustments computed so far in this epoch under this model (``resolver.fuzzy``)."""
        st = self.state
        stamp = (st, st.tf_epoch, self.model)
        old = self._tf_stamp
        if old is None or old[0] is not st or old[1] != stamp[1] or old[2] is not stamp[2]:
            self._tf = {}
            self._tf_stamp = stamp
        return self._tf

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
