"""Issue 16, item 5b: data as LLaMA-Factory users have it (content parts, tool turns, preference and KTO data,
`dataset_info.json:NAME`). The shared files' tests skip when ../shared is absent; the shapes are also built here."""
from __future__ import annotations

import json

import pytest

from damoc.data import inspect_dataset, load_samples
from damoc.errors import DataError
from tests.helpers.cli import damoc


@pytest.fixture
def lf(shared_data):
    d = shared_data / "llamafactory"
    if not d.is_dir():
        pytest.skip("../shared/data/llamafactory not present")
    return d


@pytest.mark.parametrize("name,fmt,samples", [("v1_sft_demo.jsonl", "messages", 500),
                                              ("glaive_toolcall_en_demo.json", "sharegpt", 300),
                                              ("alpaca_en_demo.json", "alpaca", 999), ("identity.json", "alpaca", 91),
                                              ("dpo_en_demo.json", "preference", 300), ("kto_en_demo.json", "kto", 150)])
def test_shared_files_load_fully(lf, name, fmt, samples):
    rep = inspect_dataset(lf / name)
    assert (rep["format"], rep["samples"], rep["ok"]) == (fmt, samples, True)
    assert not [p for p in rep["problems"] if p["severity"] != "info"]


def test_tool_turns_stay_in_the_prompt(lf):
    res = load_samples(lf / "glaive_toolcall_en_demo.json")
    raw = json.loads((lf / "glaive_toolcall_en_demo.json").read_text())
    i = next(i for i, r in enumerate(raw) if [t["from"] for t in r["conversations"]] ==
             ["human", "function_call", "observation", "gpt"])
    s, rec = res.samples[i], raw[i]
    turns = rec["conversations"]
    assert s.answer == turns[3]["value"]                                  # the final assistant turn
    assert turns[0]["value"] in s.question and turns[1]["value"] in s.question and turns[2]["value"] in s.question
    assert s.question.index("Tool call:") < s.question.index("Tool result:")
    assert "Tools available" in s.instruction and json.loads(rec["tools"])[0]["name"] in s.instruction
    assert [t["role"] for t in s.extra["conversation"]] == ["user", "tool_call", "tool", "assistant"]


def test_content_parts(lf):
    s = load_samples(lf / "v1_sft_demo.jsonl").samples[2]
    assert (s.question, s.answer.startswith("I am {{name}}")) == ("Who are you?", True)


def test_preference_trains_on_chosen(lf):
    res = load_samples(lf / "dpo_en_demo.json")
    raw = json.loads((lf / "dpo_en_demo.json").read_text())[0]
    assert res.samples[0].answer == raw["chosen"]["value"] and res.samples[0].extra["rejected"] == \
        raw["rejected"]["value"]
    assert any("preference (DPO) data" in p.message and "chosen" in p.message for p in res.problems)


def test_kto_keeps_desirable_examples(lf):
    res = load_samples(lf / "kto_en_demo.json")
    raw = json.loads((lf / "kto_en_demo.json").read_text())
    assert len(res.samples) == sum(r["label"] for r in raw)
    assert any("left out" in p.message and p.severity == "info" for p in res.problems)


@pytest.mark.parametrize("name,fmt,samples", [("alpaca_en_demo", "alpaca", 999), ("identity", "alpaca", 91),
                                              ("glaive_toolcall_en_demo", "messages", 300),
                                              ("dpo_en_demo", "preference", 300), ("kto_en_demo", "kto", 150)])
def test_dataset_info_entries(lf, name, fmt, samples):
    res = load_samples(f"{lf}/dataset_info.json:{name}")
    assert (res.format, len(res.samples)) == (fmt, samples)
    assert res.samples[0].id.startswith(name) or res.samples[0].raw is not None


def test_dataset_info_errors(lf):
    info = lf / "dataset_info.json"
    for ref, match in [(f"{info}:nope", "no dataset 'nope'"), (f"{info}:mllm_demo", "multimodal"),
                       (f"{info}:wiki_demo", "plain text"), (f"{info}:alpaca_en", "not a local file"),
                       (str(info), "name one"), (str(lf), "name one")]:
        with pytest.raises(DataError, match=match):
            load_samples(ref)


def test_dataset_info_on_the_cli(lf):
    r = damoc("data", "inspect", f"{lf}/dataset_info.json:glaive_toolcall_en_demo", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["samples"] == 300
    r = damoc("data", "inspect", str(lf / "dataset_info.json"))
    assert r.returncode == 2 and "dataset_info.json:NAME" in r.stderr and "Traceback" not in r.stderr


# -- the same shapes, built here (no ../shared needed) -------------------------------------------------------------

def write(path, recs):
    path.write_text(json.dumps(recs))
    return path


def test_custom_columns_and_tags(tmp_path):
    write(tmp_path / "chat.json", [{"dialog": [{"speaker": "me", "text": "Hi?"}, {"speaker": "ai", "text": "Hello."}],
                                    "sys": "Be brief.", "extra_col": 1}])
    write(tmp_path / "alp.json", [{"q": "Add", "ctx": "2 and 3", "a": "5", "hist": [["1+1?", "2"]]},
                                  {"q": "Say hi", "a": "hi"}])
    write(tmp_path / "pref.json", [{"instruction": "Pick", "input": "", "chosen": "good", "rejected": "bad"}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "chat": {"file_name": "chat.json", "formatting": "sharegpt",
                 "columns": {"messages": "dialog", "system": "sys"},
                 "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "ai"}},
        "alp": {"file_name": "alp.json", "columns": {"prompt": "q", "query": "ctx", "response": "a", "history": "hist"}},
        "pref": {"file_name": "pref.json", "ranking": True},
        "bad": {"file_name": "chat.json", "formatting": "openai"}}))
    info = tmp_path / "dataset_info.json"
    s = load_samples(f"{info}:chat").samples[0]
    assert (s.instruction, s.question, s.answer, s.extra["extra_col"]) == ("Be brief.", "Hi?", "Hello.", 1)
    assert s.raw == json.loads((tmp_path / "chat.json").read_text())[0]       # written back in the user's shape
    a, b = load_samples(f"{info}:alp").samples
    assert a.answer == "5" and "1+1?" in a.question and "Add\n2 and 3" in a.question
    assert (b.question, b.answer) == ("Say hi", "hi")
    p = load_samples(f"{info}:pref").samples[0]
    assert (p.question, p.answer) == ("Pick", "good")
    with pytest.raises(DataError, match="neither alpaca nor sharegpt"):
        load_samples(f"{info}:bad")


def test_openai_chat_parts_and_tool_calls(tmp_path):
    rec = {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "You help."}]},
        {"role": "user", "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Paris?"}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "1", "content": "18C"},
        {"role": "assistant", "content": [{"type": "text", "text": "It is 18C."}]}]}
    (tmp_path / "oa.jsonl").write_text(json.dumps(rec) + "\n")
    s = load_samples(tmp_path / "oa.jsonl").samples[0]
    assert (s.instruction, s.answer) == ("You help.", "It is 18C.")
    assert s.question.startswith("User: Weather in Paris?") and "weather" in s.question and "Tool result: 18C" in s.question


def test_media_parts_and_unknown_roles_are_named(tmp_path):
    recs = [{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                          {"role": "assistant", "content": "a cat"}]},
            {"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = load_samples(tmp_path / "m.jsonl", skip_bad=True, allow_empty=True)
    assert [(p.line, p.field) for p in res.problems] == [(1, "messages[0].content[0]"), (2, "messages[0]")]
    assert "text only" in res.problems[0].message and "narrator" in res.problems[1].message


def test_preference_shapes(tmp_path):
    recs = [{"prompt": "P1", "chosen": "c1", "rejected": "r1"},                                    # TRL standard
            {"chosen": [{"role": "user", "content": "P2"}, {"role": "assistant", "content": "c2"}],  # TRL conversational
             "rejected": [{"role": "user", "content": "P2"}, {"role": "assistant", "content": "r2"}]},
            {"prompt": "P3", "chosen": "", "rejected": "r3"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = load_samples(tmp_path / "p.jsonl", skip_bad=True)
    assert [(s.question, s.answer) for s in res.samples] == [("P1", "c1"), ("P2", "c2")]
    assert res.problems[0].field == "chosen"


def test_kto_all_undesirable_says_why(tmp_path):
    (tmp_path / "k.jsonl").write_text(json.dumps({"prompt": "p", "completion": "c", "label": False}) + "\n")
    with pytest.raises(DataError, match="label false"):
        load_samples(tmp_path / "k.jsonl")
