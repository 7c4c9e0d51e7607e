"""Loads the one TOML file that configures both the resolver and the projections.

Top-level keys and ``[identifier_types.*]`` tables are resolver rules (see ``resolver.config``); a
``[projection]`` table sets how the customer views summarize events (see ``projections.customer``);
``match_model`` names a probabilistic match model file (JSON, from ``idres train``), relative to the TOML::

    fuzzy_matching = true
    match_model = "match-model.json"

    [projection]
    untrusted_channels = ["social", "chat"]          # golden record: values from these lose to others
    trusted_channels_by_attribute = { date_of_birth = ["store", "call_center"] }
    purchase_types = ["purchase", "store_purchase"]
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from projections.customer import ProjectionConfig
import tomllib

from resolver.config import ResolverConfig, reject_unknown
from resolver.errors import ConfigError

if TYPE_CHECKING:
    from resolver.matching import MatchModel


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file as a dict, or a ConfigError that says what is wrong with it."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def projection_config_from_dict(data: dict[str, Any], where: str = "[projection]") -> ProjectionConfig:
    reject_unknown(data, [f.name for f in fields(ProjectionConfig)], where)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "trusted_channels_by_attribute":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} must be a table of attribute = [channels]")
            values[key] = {k: tuple(v) for k, v in value.items()}
        else:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key} must be a list of names")
            values[key] = tuple(value)
    return replace(ProjectionConfig(), **values)


def load_settings(path: Optional[str | Path]) -> tuple[ResolverConfig, ProjectionConfig]:
    """Both configurations from ``path`` (built-in defaults when ``path`` is None)."""
    if path is None:
        return ResolverConfig(), ProjectionConfig()
    data = read_toml(path)
    projection = projection_config_from_dict(data.pop("projection", {}), f"{path}: [projection]")
    model_path = data.get("match_model")
    if isinstance(model_path, str):
        # relative to the TOML file, so a config directory can be moved as a whole
        data["match_model"] = load_match_model(Path(path).parent / model_path)
    return ResolverConfig.from_dict(data, where=str(path)), projection


def load_match_model(path: str | Path) -> "MatchModel":
    """A probabilistic match model from its JSON file (the resolver itself reads no files)."""
    from resolver.matching import MatchModel

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"match model file {path} not found") from None
    return MatchModel.from_json(text, where=str(path))


def save_match_model(model: "MatchModel", path: str | Path) -> None:
    from streams.log import write_atomic

    write_atomic(Path(path), model.to_json().encode("utf-8"))
