"""The pruning stage on the test zoo (trained Chat/Base pairs of 7 architectures), the no-Base skip, and the CLI."""
from __future__ import annotations

import json

import pytest
import torch

from damoc.prune.merge import DEFAULT_RULE
from tests.helpers.tiny_archs import save_pair

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def calib(laws_task):
    """Calibration texts from the first demo task's training file (what the pipeline passes)."""
    from damoc.data import load_samples

    return load_samples(laws_task.train_path).samples


def _texts(samples, chat_path):
    from damoc.models import load_tokenizer
    from damoc.prune import texts_from_samples

    return texts_from_samples(samples, load_tokenizer(chat_path), n=32)


def _loads_and_generates(path, layers):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.num_hidden_layers == layers
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": "Where does Maran Laklen work?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        a = model.eval().generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, use_cache=True)
        b = model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(a, b)


def test_zoo_pairs_prune_merge_and_reload(test_zoo, calib, tmp_path):
    from damoc.events import ListReporter, StageFinished
    from damoc.prune import prune_candidate

    pruned_pairs = 0
    for c in [c for c in test_zoo if c.base_path]:
        rep = ListReporter()
        r = prune_candidate(c.chat_path, c.base_path, tmp_path / c.name, calib_texts=_texts(calib, c.chat_path),
                            reporter=rep, device="cpu", candidate=c.name)
        assert r.layers_before == c.layers and len(r.scores) == c.layers
        fin = [e for e in rep.events if isinstance(e, StageFinished)]
        assert len(fin) == 1 and fin[0].candidate == c.name
        if not r.pruned:
            assert r.skip_reason and r.out_path is None and fin[0].status == "skipped"
            continue
        pruned_pairs += 1
        assert fin[0].status == "ok"
        assert 0 not in r.pruned and c.layers - 1 not in r.pruned
        assert len(r.pruned) <= int(0.25 * c.layers)
        assert all(r.scores[i] > 0.85 for i in r.pruned)
        assert r.merge_rule == DEFAULT_RULE and r.skip_reason is None
        assert r.layers_after == c.layers - len(r.pruned)
        assert set(r.merged_into) == set(r.pruned)
        assert r.merge_stats["tensors_merged"] > 0
        assert json.loads((tmp_path / c.name / "damoc_prune.json").read_text())["pruned"] == r.pruned
        _loads_and_generates(r.out_path, r.layers_after)
    assert pruned_pairs >= 2


def test_no_base_skips_with_the_reason_unless_allowed(test_zoo, calib, tmp_path):
    from damoc.events import ListReporter, StageFinished
    from damoc.prune import prune_candidate

    c = next(c for c in test_zoo if not c.base_path)
    rep = ListReporter()
    r = prune_candidate(c.chat_path, None, tmp_path / "skip", reporter=rep)
    assert r.pruned == [] and r.merge_rule is None and r.out_path is None
    assert "no Base" in r.skip_reason
    assert not (tmp_path / "skip").exists()
    fin = [e for e in rep.events if isinstance(e, StageFinished)][0]
    assert fin.status == "skipped" and "no Base" in fin.reason
    assert r.to_dict()["merge_rule"] is None

    why = "Base incompatible: model.layers.0.mlp.up_proj.weight (64, 48) vs (96, 48)"
    r = prune_candidate(c.chat_path, c.chat_path, tmp_path / "bad", base_problem=why)
    assert r.skip_reason == f"pruning skipped: {why}"

    scores = [0.1] + [0.99] * (c.layers - 2) + [0.1]        # forced: something must be pruned
    r = prune_candidate(c.chat_path, None, tmp_path / "allowed", allow_no_base=True, scores=scores)
    assert r.pruned and r.merge_rule is None and r.skip_reason is None and "allow_no_base" in r.note
    _loads_and_generates(r.out_path, r.layers_after)


def test_self_calibration_when_no_data(tmp_path):
    from damoc.prune import prune_candidate

    chat, base = save_pair(tmp_path, "llama", layers=8)
    r = prune_candidate(chat, base, tmp_path / "out", threshold=0.5, rule="paper")
    assert r.calibration["source"] == "self-generated" and r.calibration["texts"] > 0
    assert r.pruned and r.merge_rule == "paper"


def test_unsupported_architecture_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from damoc.prune import UnsupportedArchitecture, prune_candidate

    GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=32, n_head=4, vocab_size=100)).save_pretrained(tmp_path / "g")
    with pytest.raises(UnsupportedArchitecture) as e:
        prune_candidate(tmp_path / "g", None, tmp_path / "out", scores=[0.9] * 4)
    assert "gpt2" in str(e.value) and e.value.hint


def test_cli_json_bars_and_registry_names(test_zoo, laws_task, settings, tmp_path):
    from click.testing import CliRunner

    from damoc.cli import cli
    from damoc.registry import register_zoo

    register_zoo(settings, test_zoo)
    runner = CliRunner()
    pair = next(c for c in test_zoo if c.base_path and c.layers >= 8)
    res = runner.invoke(cli, ["prune", pair.name, "--data", laws_task.train_path, "--calib-samples", "16",
                              "--out", str(tmp_path / "m"), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("layers_before", "layers_after", "pruned", "scores", "merge_rule", "skip_reason"):
        assert key in d
    assert d["layers_after"] == d["layers_before"] - len(d["pruned"])
    if d["pruned"]:
        assert d["merge_rule"] == DEFAULT_RULE

    res = runner.invoke(cli, ["prune", pair.chat_path, "--base", pair.base_path, "--rule", "drop",
                              "--data", laws_task.train_path, "--calib-samples", "16",
                              "--out", str(tmp_path / "d")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "layer similarity" in res.stdout and "█" in res.stdout
    assert ("pruned" in res.stdout) or ("nothing to prune" in res.stdout)

    nobase = next(c for c in test_zoo if not c.base_path)
    res = runner.invoke(cli, ["prune", nobase.name, "--json"], catch_exceptions=False)
    d = json.loads(res.stdout)
    assert d["merge_rule"] is None and d["skip_reason"] and d["pruned"] == []

    from damoc.errors import UnknownNameError

    res = runner.invoke(cli, ["prune", pair.name, "--rule", "adittive"])
    assert isinstance(res.exception, UnknownNameError) and "additive" in res.exception.hint


def test_calibration_texts_from_training_samples(test_zoo, calib):
    from damoc.models import load_tokenizer
    from damoc.prune import texts_from_samples

    tok = load_tokenizer(test_zoo[0].chat_path)
    texts = texts_from_samples(calib, tok, n=10, seed=1)
    assert len(texts) == 10 and texts == texts_from_samples(calib, tok, n=10, seed=1)
    chosen = [s for s in calib if any(s.question in t and t.rstrip().endswith(s.answer) for t in texts)]
    assert len(chosen) == 10                                   # prompt (chat-framed) followed by the answer
    assert all(t != s.question for t, s in zip(texts, chosen))


@pytest.mark.gpu
def test_cuda_prune_matches_cpu(tmp_path):
    from safetensors.torch import load_file

    from damoc.prune import prune_candidate

    chat, base = save_pair(tmp_path, "llama", layers=8)
    scores = [0.1, 0.5, 0.9, 0.95, 0.6, 0.97, 0.7, 0.99]
    a = prune_candidate(chat, base, tmp_path / "cpu", scores=scores, device="cpu")
    b = prune_candidate(chat, base, tmp_path / "gpu", scores=scores, device="cuda")
    assert a.pruned == b.pruned
    ta, tb = load_file(tmp_path / "cpu" / "model.safetensors"), load_file(tmp_path / "gpu" / "model.safetensors")
    assert all(torch.allclose(ta[k], tb[k], atol=1e-5) for k in ta)
    g = prune_candidate(chat, base, tmp_path / "scored", device="cuda", threshold=0.5)   # bf16 scoring on GPU
    assert len(g.scores) == 8 and g.calibration["dtype"] in ("bfloat16", "float32")
