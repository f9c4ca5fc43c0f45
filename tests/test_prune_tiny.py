"""The tiny builders of tests.helpers.tiny_archs give the architecture and size asked for."""
from __future__ import annotations

import pytest

from tests.helpers.tiny_archs import tiny_model


@pytest.mark.parametrize("model_type", ["llama", "gpt_neox", "gemma3_text"])
def test_tiny_builders_give_the_asked_architecture(model_type):
    m = tiny_model(model_type, layers=5)
    assert m.config.model_type == model_type
    assert m.config.num_hidden_layers == 5
    assert sum(p.numel() for p in m.parameters()) < 200_000
