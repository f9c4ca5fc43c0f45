"""Hand-off: a ready full fine-tune of the winner in LLaMA-Factory (YAML + dataset_info.json) and ms-swift (shell
command), on the user's own dataset file with the paper's hyper-parameters (DaMoC appendix C.2: lr 1e-5, batch 64,
3 epochs, AdamW; the authors trained with SWIFT). Pure: returns file name -> content; the caller writes them.

Nothing a user named reaches these files unescaped: every YAML value goes through a YAML emitter
(`yaml.safe_dump`), every shell value through `shlex.quote`, and the comment lines that mention the winner keep only
printable characters (a newline, or a Unicode line separator that YAML reads as one, would end the comment).
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from damoc.finetune.config import FullParams, LoraParams, MethodParams


def paper_hp(method: str) -> MethodParams:
    """The paper's hyper-parameters for the winner's real fine-tune: the run config's defaults (no proxy floor)."""
    return LoraParams() if method == "lora" else FullParams()


# LLaMA-Factory chat template per model family / architecture (src/llamafactory/extras/constants.py groups)
LF_TEMPLATES = {"llama": "llama3", "qwen": "qwen", "qwen2": "qwen", "gemma": "gemma", "gemma2": "gemma",
                "glm": "glm4", "chatglm": "glm4", "glm4": "glm4", "mistral": "mistral", "ministral": "mistral",
                "phi3small": "phi_small", "phi": "phi", "phi3": "phi", "yi": "yi", "internlm": "intern2",
                "internlm2": "intern2"}


@dataclass
class Winner:
    name: str
    model: str                       # hub id or folder of the checkpoint to fine-tune
    method: str = "full"             # full | lora
    family: str = ""
    architecture: str = ""
    trust_remote_code: bool = False
    variant: str = "chat"


def _columns(first: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """LLaMA-Factory formatting + column mapping for the user's record shape."""
    first = first if isinstance(first, dict) else None
    keys = set(first or {})
    for k in ("messages", "conversations"):
        if k in keys:
            msgs = (first or {}).get(k)
            msgs = msgs if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) else [{}]
            role = "role" if "role" in msgs[0] else "from"
            content = "content" if "content" in msgs[0] else "value"
            user, assistant = ("user", "assistant") if role == "role" else ("human", "gpt")
            return "sharegpt", {"columns": {"messages": k},
                                "tags": {"role_tag": role, "content_tag": content, "user_tag": user,
                                         "assistant_tag": assistant}}
    prompt = next((k for k in ("instruction", "question", "query", "prompt") if k in keys), "instruction")
    query = next((k for k in ("input", "context", "passage", "document") if k in keys), None)
    response = next((k for k in ("output", "answer", "response", "completion", "target") if k in keys), "output")
    cols = {"prompt": prompt, "response": response}
    if query:
        cols["query"] = query
    elif prompt == "instruction" and "question" in keys and first and first.get("question") != first.get(
            "instruction"):                               # a task instruction plus a separate question
        cols["query"] = "question"
    return "alpaca", {"columns": cols}


def _first_record(path: str) -> dict[str, Any] | None:
    p = Path(path)
    try:
        if p.suffix.lower() in (".jsonl", ".ndjson"):
            with open(p, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        return json.loads(line)
        elif p.suffix.lower() == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            return data[0] if isinstance(data, list) and data else None
    except (OSError, ValueError, RecursionError):
        return None
    return None


def _comment(text: str) -> str:
    """`text` safe inside a `#` comment of YAML and of bash: a line break of either (\n, \r, NEL, U+2028/9) or
    any other unprintable character becomes '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _component(name: str) -> str:
    """A name usable as one path component of an output folder (never `..`, never a separator): the candidate
    name rule, which a registered name already meets (unchanged then)."""
    from damoc.registry.models import NAME_RE

    if NAME_RE.match(name):
        return name
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-._+")[:100] or "winner"


def _yaml(key: str, value: Any, comment: str = "") -> str:
    """One `key: value` line written by the YAML emitter (quoted and escaped when the value needs it)."""
    text = yaml.safe_dump({key: value}, default_flow_style=False, allow_unicode=False, sort_keys=False,
                          width=10**9)
    if comment:
        text = text.rstrip("\n") + "   # " + _comment(comment) + "\n"
    return text


def template_for(w: Winner) -> str:
    for key in (w.family, w.architecture, w.name.split("-")[0]):
        k = (key or "").lower().replace("_", "").replace("-", "")
        if k in LF_TEMPLATES:
            return LF_TEMPLATES[k]
    return "default"


def _dataset_entry(dataset: str) -> dict[str, Any]:
    """The LLaMA-Factory dataset_info.json entry of the run's dataset: a `dataset_info.json:NAME` reference keeps
    its own entry (formatting, columns, tags); a plain file gets one from the shape of its first record."""
    from damoc.data import resolve_source
    from damoc.errors import DataError

    try:
        lf = resolve_source(dataset).entry
    except DataError:
        lf = None
    if lf is not None:
        spec: dict[str, Any] = {"file_name": str(lf.file.resolve())}
        if lf.formatting != "alpaca":
            spec["formatting"] = lf.formatting
        if lf.ranking:
            spec["ranking"] = True
        spec.update({k: v for k, v in (("columns", lf.columns), ("tags", lf.tags)) if v})
        return {"damoc_" + "".join(c if c.isalnum() else "_" for c in lf.name): spec}
    ds_name = "damoc_" + "".join(c if c.isalnum() else "_" for c in Path(dataset).stem)
    fmt, cols = _columns(_first_record(dataset))
    return {ds_name: {"file_name": str(Path(dataset).resolve()), **({"formatting": fmt} if fmt != "alpaca" else {}),
                      **cols}}


def handoff_files(winner: Winner, dataset: str, *, run_id: str = "", score: str = "") -> dict[str, str]:
    hp = paper_hp(winner.method)
    entry = _dataset_entry(dataset)
    ds_name, ds_spec = next(iter(entry.items()))
    template = template_for(winner)
    out_name = _component(winner.name)
    head = (_comment(f"# DaMoC hand-off for run {run_id}: {winner.name} won" + (f" ({score})" if score else "") +
                     ".") + "\n" +
            f"# Full fine-tune with the paper's hyper-parameters (lr {hp.lr:g}, "
            f"effective batch {hp.effective_batch}, {hp.epochs:g} epochs, AdamW).\n")
    lora = (_yaml("lora_rank", hp.lora_r) + _yaml("lora_alpha", hp.lora_alpha) + _yaml("lora_target", "all")
            if winner.method == "lora" else
            _yaml("deepspeed", "examples/deepspeed/ds_z3_config.json", "ZeRO-3 (needs deepspeed); drop for one GPU"))
    lf_yaml = (
        head +
        "# Run from a LLaMA-Factory checkout: llamafactory-cli train llamafactory_sft.yaml\n"
        "# (dataset_dir points at the folder holding llamafactory_dataset_info.json, renamed to dataset_info.json)\n"
        "\n### model\n" +
        _yaml("model_name_or_path", winner.model) +
        _yaml("trust_remote_code", bool(winner.trust_remote_code)) +
        "\n### method\n" + _yaml("stage", "sft") + _yaml("do_train", True) +
        _yaml("finetuning_type", winner.method) + lora +
        "\n### dataset\n" +
        _yaml("dataset", ds_name) + _yaml("dataset_dir", ".") +
        _yaml("template", template, "no LLaMA-Factory template known for this family: set it"
              if template == "default" else "") +
        _yaml("cutoff_len", 2048) + _yaml("preprocessing_num_workers", 16) +
        "\n### output\n" +
        _yaml("output_dir", f"saves/{out_name}/{winner.method}/sft") +
        _yaml("logging_steps", 10) + _yaml("save_steps", 500) + _yaml("plot_loss", True) +
        _yaml("overwrite_output_dir", True) +
        "\n### train  (effective batch = per_device x accumulation x GPUs = 64 on 8 GPUs; adjust for yours)\n" +
        _yaml("per_device_train_batch_size", 1) + _yaml("gradient_accumulation_steps", 8) +
        _yaml("learning_rate", float(hp.lr)) + _yaml("num_train_epochs", float(hp.epochs)) +
        _yaml("optim", "adamw_torch") + _yaml("lr_scheduler_type", "cosine") + _yaml("warmup_ratio", 0.1) +
        _yaml("bf16", True) + _yaml("ddp_timeout", 180000000))
    swift = [
        "swift", "sft",
        "--model", winner.model,
        "--tuner_type", winner.method,
        "--dataset", ds_spec["file_name"],
        "--torch_dtype", "bfloat16",
        "--num_train_epochs", f"{hp.epochs:g}",
        "--per_device_train_batch_size", "1",
        "--gradient_accumulation_steps", "8",
        "--learning_rate", f"{hp.lr:g}",
        "--optim", "adamw_torch",
        "--warmup_ratio", "0.1",
        "--max_length", "2048",
        "--output_dir", f"output/{out_name}",
        "--save_steps", "500",
        "--logging_steps", "10",
    ]
    if winner.method == "full":
        swift += ["--deepspeed", "zero3"]
    else:
        swift += ["--lora_rank", str(hp.lora_r), "--lora_alpha", str(hp.lora_alpha), "--target_modules", "all-linear"]
    if Path(winner.model).is_absolute():
        swift += ["--check_model", "false"]          # a local folder: no hub lookup (offline boxes)
    if ds_spec.get("formatting", "alpaca") == "alpaca":
        # ms-swift reads alpaca columns (instruction/input/output) natively; rename the user's columns onto them
        target = {"prompt": "instruction", "query": "input", "response": "output"}
        mapping = {col: target[role] for role, col in ds_spec.get("columns", {}).items()
                   if role in target and col != target[role]}
        if mapping:
            swift += ["--columns", json.dumps(mapping)]
    # one "--flag value" per line, every token shell-quoted
    parts = ["swift sft"] + [f"{swift[i]} {shlex.quote(swift[i + 1])}" for i in range(2, len(swift), 2)]
    cmd = " \\\n    ".join(parts)
    swift_sh = (
        "#!/usr/bin/env bash\n" + head +
        "# ms-swift >= 4 calls the tuning switch --tuner_type; ms-swift 3.x calls it --train_type.\n"
        "# Effective batch = per_device x accumulation x GPUs = 64 on 8 GPUs (NPROC_PER_NODE=8); adjust for yours.\n"
        "set -euo pipefail\n"
        "NPROC_PER_NODE=${NPROC_PER_NODE:-8} \\\n" + cmd + "\n")
    return {"llamafactory_sft.yaml": lf_yaml,
            "llamafactory_dataset_info.json": json.dumps(entry, indent=2) + "\n",
            "swift_sft.sh": swift_sh}
