"""One TOML file configures the resolver rules and the customer views."""

import pytest

from projections.customer import CustomerViews
from resolver.errors import ConfigError
from streams.settings import load_settings
from tests.resolver_helpers import Run, ev


def test_projection_table_sets_golden_record_survivorship(tmp_path):
    path = tmp_path / "idres.toml"
    path.write_text('default_region = "GB"\n'
                    '[projection]\n'
                    'untrusted_channels = ["web"]\n'
                    'trusted_channels_by_attribute = { date_of_birth = ["store"] }\n')
    config, projection = load_settings(path)
    assert config.default_region == "GB"
    run = Run(config)
    run.views = CustomerViews(projection)
    run.feed([
        ev("1", 0, channel="store", email="a@mailbox.org", attrs={"first_name": "Ann", "date_of_birth": "1990-01-02"}),
        ev("2", 5, channel="web", email="a@mailbox.org", attrs={"first_name": "Annie"}),
        ev("3", 9, channel="call_center", email="a@mailbox.org", attrs={"last_name": "Lee"}),
    ])
    golden = run.views.customer(run.profile_of("1"))["golden_record"]
    # web is untrusted: the older store value survives; the only last name comes from the call centre
    assert golden == {"date_of_birth": "1990-01-02", "first_name": "Ann", "last_name": "Lee"}
    # with the defaults the most recent value wins
    default = Run().feed([
        ev("1", 0, channel="store", email="a@mailbox.org", attrs={"first_name": "Ann"}),
        ev("2", 5, channel="web", email="a@mailbox.org", attrs={"first_name": "Annie"}),
    ])
    assert default.views.customer(default.profile_of("1"))["golden_record"]["first_name"] == "Annie"


def test_bad_settings_are_one_clear_line(tmp_path):
    path = tmp_path / "idres.toml"
    path.write_text("[projection]\nuntrusted = [\"web\"]\n")
    with pytest.raises(ConfigError, match=r"\[projection\]: unknown setting"):
        load_settings(path)
    path.write_text("[projection]\npurchase_types = \"purchase\"\n")
    with pytest.raises(ConfigError, match=r"projection.purchase_types = \"purchase\": expected a list of strings"):
        load_settings(path)
    path.write_text("this is = not toml =")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)
