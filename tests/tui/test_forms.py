"""The wizard's form reads each field as its run-config setting's type, with the setting's own default."""
from __future__ import annotations

import pytest

from damoc import facade
from damoc.errors import ConfigError
from damoc.facade import RunConfig
from damoc_tui.screens.wizard.forms import parse


def test_settings_come_from_the_run_config_schema():
    defaults = RunConfig()
    assert facade.setting("filter.ratio").default == defaults.filter.ratio
    assert facade.setting("prune.threshold").default == defaults.prune.threshold
    seeds = facade.setting("seeds")
    assert (seeds.type, seeds.item, seeds.default) == (list, int, defaults.seeds)
    assert facade.setting("dataset.max_train").optional
    assert facade.setting("mode").choices == facade.modes()
    with pytest.raises(ConfigError):
        facade.setting("filter.ratoi")


@pytest.mark.parametrize("key,text,value", [
    ("filter.ratio", "0.25", 0.25),
    ("filter.ratio", "", 0.1),                  # empty: the setting's default
    ("filter.count", "", None),                 # empty and optional: None
    ("filter.count", "500", 500),
    ("seeds", "0, 1", [0, 1]),
    ("dataset.test", " data/test.jsonl ", "data/test.jsonl"),
    ("prune.sparsity", "lots", "lots"),         # left for the validation to name the setting
])
def test_field_text_parses_as_its_setting(key, text, value):
    assert parse(text, facade.setting(key)) == value
