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
    assisted_channels = ["call_center", "chat", "store", "social"]   # where a person serves the customer
    report_currency = "USD"                           # metric views: money in this currency ...
    exchange_rates = { EUR = 1.08, GBP = 1.27 }       # ... converted at these rates (others are left out)
    contact_costs = { call_center = 6.5, chat = 2.0 } # cost of one contact per channel, for cost to serve
    programme_cost = 250000                           # the omnichannel programme's cost, for its return
    churn_days = 90                                   # inactive this long (as of the snapshot): churned
    at_risk_gap_ratio = 3.0                           # inactive this many times one's own usual gap: at risk
    at_risk_probability = 0.3                         # or a modelled probability alive below this
    stale_case_days = 7                               # open cases older than this are listed
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from projections.customer import ProjectionConfig
import tomllib

from resolver.config import (Check, ResolverConfig, channel_names, check_table, config_error, config_path,
                             is_channel_name, reject_unknown, shown, strings, table_of, whole_number)
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


_CHANNELS = channel_names('["social", "chat"]')


def _amount(minimum: float, above: bool, optional: bool = False) -> Check:
    """A number (TOML ``true`` is not 1) above (or at least) ``minimum``."""
    expected = f"a number {'>' if above else '>='} {minimum:g}"

    def check(value: Any, path: str, where: str) -> Optional[float]:
        if value is None and optional:
            return None
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
                or (value <= minimum if above else value < minimum) or value == float("inf")):
            config_error(where, path, value, expected)
        return float(value)

    return check


def _probability(value: Any, path: str, where: str) -> float:
    """A probability: a number from 0 to 1 (TOML ``true`` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        config_error(where, path, value, "a probability, a number from 0 to 1")
    return float(value)


def _currency(value: Any, path: str, where: str) -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha() or not value.isupper():
        config_error(where, path, value, 'a three-letter currency code, such as "USD" or "EUR"')
    return value

def _contact_costs(value: Any, path: str, where: str) -> dict[str, float]:
    """A table of channel = cost, the channels named as events give them ("Call Center" would cost nothing)."""
    costs = table_of(_amount(0, False), "a table of channel = cost, such as { call_center = 6.5 }")(value, path, where)
    for channel in costs:
        if not is_channel_name(channel):
            config_error(where, config_path(path, channel), costs[channel],
                         "a cost of a channel named as events give it (lower-case letters, digits and _), such as "
                         "call_center = 6.5")
    return costs


_EVENT_TYPES = strings('["purchase", "order"]')
_PROJECTION: dict[str, Check] = {
    "untrusted_channels": _CHANNELS,
    "trusted_channels_by_attribute": table_of(_CHANNELS, "a table of attribute = [channels], such as "
                                                         '{ date_of_birth = ["store", "call_center"] }'),
    "purchase_types": _EVENT_TYPES,
    "refund_types": _EVENT_TYPES,
    "case_open_types": _EVENT_TYPES,
    "case_close_types": _EVENT_TYPES,
    "assisted_channels": channel_names('["call_center", "chat", "store", "social"]'),
    "report_currency": _currency,
    "exchange_rates": table_of(_amount(0, True), "a table of currency = rate, such as { EUR = 1.08 }"),
    "contact_costs": _contact_costs,
    "programme_cost": _amount(0, False, optional=True),
    "churn_days": whole_number(1),
    "at_risk_gap_ratio": _amount(0, True),
    "at_risk_probability": _probability,
    "stale_case_days": whole_number(0),
}


def projection_config_from_dict(data: Any, where: str = "config") -> ProjectionConfig:
    """The ``[projection]`` table of the file ``where``, every value type-checked."""
    check_table(data, "projection", where, "a table of projection settings ([projection])")
    reject_unknown(data, [f.name for f in fields(ProjectionConfig) if f.name not in FROM_RESOLVER],
                   f"{where}: [projection]")
    return replace(ProjectionConfig(), **{key: _PROJECTION[key](value, config_path("projection", key), where)
                                          for key, value in data.items()})


# the projection's settings that are the resolver's, set at the top level and copied (``load_settings``)
FROM_RESOLVER = ("delivery_event_types", "in_person_channels")


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
    config = ResolverConfig.from_dict(data, where=str(path))
    # (the golden record takes an order's name and address as a recipient's, maybe, as the resolver does)
    return config, replace(projection, delivery_event_types=config.delivery_event_types,
                           in_person_channels=config.in_person_channels)


def load_match_model(path: str | Path) -> "MatchModel":
    """A probabilistic match model from its JSON file (the resolver itself reads no files)."""
    from resolver.matching import MatchModel

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"match model file {path} not found: write one with `idres train FILE --out {path}`, "
                          f"or fix the path") from None
    except OSError as exc:
        raise ConfigError(f"match model file {path} cannot be read: {exc.strerror or exc}: give the path of a model "
                          f"file `idres train FILE --out {path if not Path(path).is_dir() else 'model.json'}` "
                          "wrote") from None
    except UnicodeDecodeError:
        raise ConfigError(f"match model file {path} is not UTF-8 text") from None
    return MatchModel.from_json(text, where=str(path))


def save_match_model(model: "MatchModel", path: str | Path) -> None:
    from projections.storage import write_atomic

    write_atomic(Path(path), model.to_json().encode("utf-8"))
