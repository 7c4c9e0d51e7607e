"""Predicted customer value (placeholder until the model is wired)."""
from __future__ import annotations
from typing import Any, Optional


def predict_into(con: Any, config: Any) -> Optional[str]:
    return "the purchase models are not installed"
