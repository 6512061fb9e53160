"""Parameter counts at the paper's configuration against the paper's Table II (±1%)."""

from __future__ import annotations

import pytest

from nowcast_cli.models import MODELS, count_parameters, create_model, list_models

TABLE_II = {
    "convlstm": 0.89e6,
    "trajgru": 1.06e6,
    "predrnn": 1.80e6,
    "mim": 3.68e6,
    "motionrnn": 3.78e6,
}


@pytest.mark.parametrize("name", sorted(TABLE_II))
def test_parameter_count_matches_table_ii(name: str) -> None:
    n = count_parameters(create_model(name))  # defaults = paper configuration
    assert abs(n - TABLE_II[name]) <= 0.01 * TABLE_II[name], n


def test_persistence_has_no_parameters() -> None:
    assert count_parameters(create_model("persistence")) == 0


def test_list_models_counts_equal_real_instances() -> None:
    listed = {r["name"]: r["params"] for r in list_models()}
    assert set(listed) == set(MODELS.names())
    for name, n in listed.items():
        assert n == count_parameters(create_model(name)), name
