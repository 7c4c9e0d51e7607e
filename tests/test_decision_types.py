"""The resolver's typed decisions (``resolver.decisions``) and the published contract
(``schemas.decisions``) describe the same fields, required and optional alike."""

from __future__ import annotations

import typing

import pytest

from resolver import decisions as typed
from schemas import decisions as published


def _model_for(name: str):
    return getattr(published, name)


@pytest.mark.parametrize("kind", typed.ALL, ids=lambda k: k.__name__)
def test_each_typed_decision_has_the_published_fields(kind):
    model = _model_for(kind.__name__)
    hints = typing.get_type_hints(kind)
    assert set(hints) == set(model.model_fields), kind.__name__
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    # the resolver always writes what the contract requires; what it may leave out, the contract does not require
    assert required <= set(kind.__required_keys__), kind.__name__


def test_every_published_decision_type_is_typed():
    union = typing.get_args(typing.get_args(published.Decision)[0])
    assert {m.__name__ for m in union} == {k.__name__ for k in typed.ALL}
