"""LLaMA-Factory's `dataset_info.json`: `--dataset path/to/dataset_info.json:NAME` reads the entry NAME as
LLaMA-Factory would (its `file_name`, `formatting` alpaca|sharegpt, `columns`, `tags`, `ranking`), so a user's
LLaMA-Factory data works in damoc as it is.

An entry's records are mapped onto the shapes `damoc.data.formats` reads: alpaca columns onto
instruction/input/output (a `history` column turns the record into a conversation), sharegpt turns onto
`messages` with the roles its tags name; `ranking: true` makes preference data, a `kto_tag` column KTO data.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import DataError

INFO_NAME = "dataset_info.json"
HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
ENTRY_KEYS = ("file_name", "formatting", "columns", "tags", "ranking") + HUB_KEYS
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_COLUMNS = {"messages": "conversations"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
_TAG_ROLE = {"user_tag": "user", "assistant_tag": "assistant", "observation_tag": "tool",
             "function_tag": "tool_call", "system_tag": "system"}


@dataclass(frozen=True)
class Entry:
    """One dataset of a `dataset_info.json`."""
    name: str
    info: Path
    file: Path
    formatting: str = "alpaca"
    ranking: bool = False
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.info}:{self.name}"

    @property
    def format(self) -> str:
        """The damoc format its mapped records have."""
        if self.ranking:
            return "preference"
        if "kto_tag" in self.columns:
            return "kto"
        return "messages" if self.formatting == "sharegpt" or "history" in self.columns else "alpaca"

    def map(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """A record of this dataset in damoc's shape (columns the entry does not map are kept as they are)."""
        cols = {**(ALPACA_COLUMNS if self.formatting == "alpaca" else SHAREGPT_COLUMNS),
                **({"chosen": "chosen", "rejected": "rejected"} if self.ranking else {}), **self.columns}
        used = set(cols.values())
        out: dict[str, Any] = {k: v for k, v in rec.items() if k not in used}

        def col(role: str) -> Any:
            return rec.get(cols[role]) if role in cols else None

        if self.formatting == "sharegpt":
            out["messages"] = [self._turn(t) for t in col("messages")] if isinstance(col("messages"), list) \
                else col("messages")
        elif self.ranking or "kto_tag" in self.columns or "history" in self.columns:
            # earlier exchanges (or a single response to judge) make a conversation: the prompt and query form the
            # last user turn, as LLaMA-Factory joins them
            prompt = "\n".join(str(p) for p in (col("prompt"), col("query")) if p not in (None, ""))
            turns: list[dict[str, Any]] = []
            history = col("history")
            for pair in history if isinstance(history, list) else []:
                q, a = pair if isinstance(pair, (list, tuple)) and len(pair) == 2 else (pair, None)
                turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            turns.append({"role": "user", "content": prompt})
            if not self.ranking:
                turns.append({"role": "assistant", "content": col("response")})
            out["messages"] = turns
        else:
            out.update({"instruction": col("prompt"), "input": col("query"), "output": col("response")})
        if col("system") not in (None, ""):
            out["system"] = col("system")
        if col("tools") not in (None, ""):
            out["tools"] = col("tools")
        if self.ranking:
            for k in ("chosen", "rejected"):
                v = col(k)
                out[k] = self._turn(v) if self.formatting == "sharegpt" and isinstance(v, Mapping) else v
        if "kto_tag" in self.columns:
            out["label"] = col("kto_tag")
        return out

    def _turn(self, t: Any) -> Any:
        if not isinstance(t, Mapping):
            return t
        tags = {**SHAREGPT_TAGS, **self.tags}
        roles = {tags[k]: r for k, r in _TAG_ROLE.items() if k in tags}
        role = t.get(tags["role_tag"])
        return {"role": roles.get(role, role) if isinstance(role, str) else role, "content": t.get(tags["content_tag"])}


def split_ref(ref: str | Path) -> tuple[Path, str | None]:
    """`path/dataset_info.json:NAME` to (the info file, NAME); any other path to (path, None)."""
    p = Path(ref).expanduser()
    if p.exists():
        return p, None
    head, sep, name = str(ref).rpartition(":")
    if sep and name and Path(head).name == INFO_NAME:
        return Path(head).expanduser(), name
    return p, None


def read_info(info: Path) -> dict[str, Any]:
    """A LLaMA-Factory `dataset_info.json` (an object of dataset entries), or DataError."""
    try:
        data = json.loads(info.read_text(encoding="utf-8-sig"))
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path=str(info)) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DataError(f"not a readable dataset_info.json ({type(e).__name__})", "fix the JSON syntax",
                        path=str(info)) from None
    if not is_info(data):
        raise DataError("not a LLaMA-Factory dataset_info.json (an object of dataset entries)", path=str(info))
    return data


def is_info(data: Any) -> bool:
    """Whether a parsed JSON document is a LLaMA-Factory dataset registry (and not a `datasets` folder's info)."""
    return (isinstance(data, dict) and bool(data) and all(isinstance(v, dict) for v in data.values())
            and any(set(v) & set(ENTRY_KEYS) for v in data.values())
            and not {"features", "builder_name", "splits"} & set(data))


def local_names(data: Mapping[str, Any]) -> list[str]:
    return [k for k, v in data.items() if isinstance(v, dict) and "file_name" in v]


def not_a_dataset(info: Path, data: Mapping[str, Any]) -> DataError:
    names = local_names(data)
    shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
    return DataError("a LLaMA-Factory dataset_info.json lists datasets; name one",
                     f"pass {info}:NAME" + (f" (local datasets: {shown})" if names else ""), path=str(info))


def entry(info: Path, name: str) -> Entry:
    data = read_info(info)
    where = f"{info}:{name}"
    if name not in data:
        close = difflib.get_close_matches(name, list(data), n=3, cutoff=0.5)
        raise DataError(f"no dataset {name!r} in {INFO_NAME}",
                        f"did you mean {', '.join(close)}?" if close else f"local datasets: "
                        f"{', '.join(local_names(data)[:12]) or 'none'}", path=str(info))
    e = data[name]
    if "file_name" not in e:
        hub = next((f"{k} {e[k]!r}" for k in HUB_KEYS if k in e), None)
        raise DataError(f"dataset {name!r} is not a local file" + (f" (it names {hub})" if hub else ""),
                        "damoc reads local files: download it (e.g. datasets.load_dataset(...).save_to_disk(DIR)) "
                        "and pass the folder", path=where)
    for key, kind in (("columns", dict), ("tags", dict), ("file_name", str), ("formatting", str)):
        if key in e and not isinstance(e[key], kind):
            raise DataError(f"entry {name!r}: {key} must be {'an object' if kind is dict else 'a string'}",
                            path=str(info), field=key)
    formatting = e.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise DataError(f"entry {name!r}: formatting {formatting!r} is neither alpaca nor sharegpt",
                        path=str(info), field="formatting")
    columns = {str(k): str(v) for k, v in (e.get("columns") or {}).items()}
    tags = {str(k): str(v) for k, v in (e.get("tags") or {}).items()}
    for media in ("images", "videos", "audios"):
        if media in columns:
            raise DataError(f"entry {name!r} is multimodal ({media})", "damoc ranks text models: pick a text "
                            "dataset", path=where)
    file = (info.parent / e["file_name"]).resolve()
    if file.suffix.lower() == ".txt":
        raise DataError(f"entry {name!r} is plain text (pretraining data)",
                        "damoc fine-tunes on prompt/response pairs: pick an SFT dataset", path=where)
    if not file.exists():
        raise DataError(f"entry {name!r}: file {e['file_name']!r} not found next to {INFO_NAME}",
                        "check file_name (it is relative to the dataset_info.json folder)", path=str(file))
    return Entry(name=name, info=info, file=file, formatting=formatting, ranking=bool(e.get("ranking", False)),
                 columns=columns, tags=tags)
