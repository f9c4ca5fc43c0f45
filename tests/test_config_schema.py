"""The run config's schema: every default is written once (in the module that owns the stage), the documented
listing matches it, and each section builds its module's config explicitly."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from damoc.compress.config import CompressConfig, CompressParams
from damoc.errors import ConfigError
from damoc.finetune.config import FinetuneConfig, FullParams, LoraParams
from damoc.pipeline.config import RunConfig, load_config
from damoc.pipeline.recipes import recipe_overrides
from damoc.prune.config import PruneParams

DOCS = Path(__file__).resolve().parents[1] / "docs" / "run.md"


def test_docs_listing_is_the_schema():
    block = re.search(r"```yaml\n(mode: damoc.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert block, "docs/run.md lost its run-config listing"
    assert yaml.safe_load(block.group(1)) == RunConfig().to_dict()


def test_sections_are_the_modules_schemas():
    cfg = RunConfig()
    assert type(cfg.finetune.full) is FullParams and type(cfg.finetune.lora) is LoraParams
    assert type(cfg.compress) is CompressParams and type(cfg.prune) is PruneParams


def test_finetune_section_builds_the_module_config():
    cfg = RunConfig().finetune
    full = cfg.to_config("full", proxy=True, seed=3, device="cpu")
    assert isinstance(full, FinetuneConfig)
    assert (full.method, full.lr, full.min_steps, full.seed, full.device) == ("full", 1e-5, 120, 3, "cpu")
    assert (full.epochs, full.effective_batch, full.max_length) == (FinetuneConfig().epochs, 64, 512)
    lora = cfg.to_config("lora", proxy=False, seed=0, device="auto")
    assert (lora.lr, lora.min_steps, lora.lora_r, lora.lora_alpha) == (1e-4, 0, 8, 16)
    tuned = FullParams(micro_batch=4, max_length=128, params={"max_steps": 7}).to_config("full")
    assert (tuned.micro_batch, tuned.max_length, tuned.max_steps) == (4, 128, 7)
    with pytest.raises(ConfigError, match="no setting.*bogus"):
        FullParams(params={"bogus": 1}).to_config("full")


def test_compress_and_prune_sections_build_their_modules_arguments():
    c = CompressParams(rate=0.4, params={"max_rounds": 1}).to_config(model_path="/m", rewriter_path=None)
    assert isinstance(c, CompressConfig) and (c.rate, c.model, c.max_rounds, c.compressor) == (0.4, "/m", 1, "damoc")
    assert CompressConfig().rate == CompressParams().rate
    with pytest.raises(ConfigError, match="no setting.*nope"):
        CompressParams(params={"nope": 1}).to_config(model_path="/m")
    kw = PruneParams(rule="drop", params={"max_fraction": 0.5}).candidate_kwargs()
    assert kw == {"threshold": 0.85, "sparsity": 0.2, "allow_no_base": False, "max_fraction": 0.5, "rule": "drop"}


def test_select_defaults_to_the_adaptive_budget_and_one_size_means_the_papers_ranking():
    sel = RunConfig().select
    assert (sel.adaptive, sel.sizes, sel.predictor) == (True, [0.25, 0.5, 1.0], "damoc")
    one = load_config(None, ["select.sizes=[1.0]"], {}).select
    assert one.predictor == "final"                              # no curve to extrapolate: the measured score
    named = load_config(None, ["select.sizes=[1.0]", "select.predictor=ats"], {}).select
    assert named.predictor == "ats"                              # a predictor the user named is kept
    paper = load_config(None, recipe_overrides("paper"), {}).select
    assert (paper.adaptive, paper.sizes, paper.predictor) == (False, [1.0], "final")
