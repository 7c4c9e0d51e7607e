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

from resolver.config import (Check, ResolverConfig, check_table, config_error, config_path, reject_unknown,
                             shown, strings, table_of)
from resolver.errors import ConfigError

if TYPE_CHECKING:
    from resolver.matching import MatchModel


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML file as a dict, or a ConfigError that says what is wrong with it."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found: give the path of a TOML file") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory: give the path of a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc}): check its permissions, "
                          f"or give another file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text: save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


_CHANNELS = strings('["social", "chat"]')
_EVENT_TYPES = strings('["purchase", "order"]')
_PROJECTION: dict[str, Check] = {
    "untrusted_channels": _CHANNELS,
    "trusted_channels_by_attribute": table_of(_CHANNELS, "a table of attribute = [channels], such as "
                                                         '{ date_of_birth = ["store", "call_center"] }'),
    "purchase_types": _EVENT_TYPES,
    "refund_types": _EVENT_TYPES,
    "case_open_types": _EVENT_TYPES,
    "case_close_types": _EVENT_TYPES,
}


def projection_config_from_dict(data: Any, where: str = "config") -> ProjectionConfig:
    """The ``[projection]`` table of the file ``where``, every value type-checked."""
    check_table(data, "projection", where, "a table of projection settings ([projection])")
    reject_unknown(data, [f.name for f in fields(ProjectionConfig)], f"{where}: [projection]")
    return replace(ProjectionConfig(), **{key: _PROJECTION[key](value, config_path("projection", key), where)
                                          for key, value in data.items()})


def load_settings(path: Optional[str | Path]) -> tuple[ResolverConfig, ProjectionConfig]:
    """Both configurations from ``path`` (built-in defaults when ``path`` is None); a value of the wrong
    type is a ConfigError naming the file, the key, the value and what is expected."""
    if path is None:
        return ResolverConfig(), ProjectionConfig()
    data = read_toml(path)
    projection = projection_config_from_dict(data.pop("projection", {}), str(path))
    model_path = data.get("match_model")
    if isinstance(model_path, str):
        if not model_path.strip():
            config_error(str(path), "match_model", model_path, 'the path of a match model file (from '
                                                               '`idres train`), such as "model.json"')
        # relative to the TOML file, so a config directory can be moved as a whole
        try:
            data["match_model"] = load_match_model(Path(path).parent / model_path)
        except ConfigError as exc:
            raise ConfigError(f"{path}: match_model = {shown(model_path)}: {exc}") from None
    return ResolverConfig.from_dict(data, where=str(path)), projection


def load_match_model(path: str | Path) -> "MatchModel":
    """A probabilistic match model from its JSON file (the resolver itself reads no files)."""
    from resolver.matching import MatchModel

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"match model file {path} not found: write one with `idres train FILE --out {path}`, "
                          f"or fix the path") from None
    except OSError as exc:
        raise ConfigError(f"match model file {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"match model file {path} is not UTF-8 text") from None
    return MatchModel.from_json(text, where=str(path))


def save_match_model(model: "MatchModel", path: str | Path) -> None:
    from streams.log import write_atomic

    write_atomic(Path(path), model.to_json().encode("utf-8"))
