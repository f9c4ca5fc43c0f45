"""The run configuration: one validated, frozen-on-disk description of a selection run.

Loaded from YAML, TOML or JSON (mergekit/torchtune style), then `--set a.b=value` overrides, then validated by
pydantic with `extra="forbid"`: an unknown key is an error naming where it is and the closest known key.

Defaults are the paper's (DaMoC, appendix C.2): GraphCut at 10%, token compression to ~50%, layer pruning at
similarity 0.85 with 20% sparse merging, lr 1e-5, effective batch 64, 3 epochs, AdamW; see `recipes.py` for which
stage applies to which candidate.
"""
from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from damoc.compress.config import CompressParams
from damoc.errors import ConfigError, UnknownNameError
from damoc.finetune.config import PROXY_MIN_STEPS, FinetuneConfig, FullParams, LoraParams, MethodParams
from damoc.finetune.methods import FINETUNE_METHODS
from damoc.prune.config import PruneParams

MODES = ("damoc", "ground-truth", "zero-shot", "few-shot")
BOTH = "both"               # every registered fine-tune method, the better one per candidate (paper sec. 5.4)
FT_CHOICES = (*FINETUNE_METHODS.names(), BOTH)
METRICS = ("auto", "bertscore_rouge", "squad_f1", "mc_accuracy")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetSection(_Section):
    """The user's data. Without a test file, a deterministic `test_fraction` of the training file is held out."""

    train: str = ""
    test: str | None = None
    format: str = "auto"
    test_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    max_train: int | None = Field(None, ge=1, description="cap on training samples (None = all)")
    max_test: int | None = Field(None, ge=1, description="cap on evaluation samples (None = all)")


class FilterSection(_Section):
    """Data filtering (shared by every candidate). The paper recommends GraphCut; 5% breaks the ranking."""

    enabled: bool = True
    method: str = "graphcut"
    ratio: float = Field(0.1, gt=0, le=1)
    count: int | None = Field(None, ge=1, description="absolute budget; overrides ratio")
    scorer: str = Field("", description="registry name or model folder of the LM that scores samples for the "
                                        "LM-based methods (AlpaGasus, LMA, Superfiltering, LESS, MoDS, Cherry, "
                                        "Deita, CaR); empty = the smallest candidate of the run")
    params: dict[str, Any] = Field(default_factory=dict)


class FinetuneSection(_Section):
    full: FullParams = Field(default_factory=FullParams)
    lora: LoraParams = Field(default_factory=LoraParams)
    proxy_min_steps: int = Field(PROXY_MIN_STEPS, ge=0, description=(
        "minimum optimizer steps of a proxy fine-tune (zoo-spike: 38 steps learned nothing, 114 recovered the "
        "ranking); ground truth runs use no minimum"))
    deepspeed: str | None = Field(None, description="DeepSpeed config file passed through on GPU boxes")
    bf16: Literal["auto", "on", "off"] = "auto"

    def method(self, name: str) -> MethodParams:
        """The section of one fine-tuning method (full | lora)."""
        return self.full if name == "full" else self.lora

    def to_config(self, method: str, *, proxy: bool, seed: int, device: str) -> FinetuneConfig:
        """The fine-tune module's config for one proxy (or ground-truth) fine-tune of this run."""
        return self.method(method).to_config(
            method, min_steps=self.proxy_min_steps if proxy else 0, seed=seed, device=device,
            deepspeed=self.deepspeed, bf16="auto" if self.bf16 == "auto" else self.bf16 == "on")


class EvaluateSection(_Section):
    metric: str = "auto"
    few_shot: int = Field(3, ge=1, description="examples in the prompt for --mode few-shot")
    max_new_tokens: int = Field(0, ge=0, description="0 = the metric's default")
    backend: str = "auto"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            close = difflib.get_close_matches(v, METRICS, n=1)
            raise ValueError(f"unknown metric {v!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                        f"; one of {', '.join(METRICS)}"))
        return v


class SelectSection(_Section):
    """How the proxies rank the candidates. Each proxy can be trained on nested subsets of the filtered set
    (GraphCut's greedy order is nested: its first 25% of picks are a subset of its first 50%), giving a learning
    curve per candidate; a curve predictor of damoc.curves extrapolates it to the whole training set, and the
    leaderboard ranks by that prediction."""

    # The defaults are the adaptive budget over three nested shares: over the six zoo cells of the selection
    # benchmark (docs/run.md) it ranked the field better than one proxy on the whole filtered set (median Kendall
    # tau 0.62 against 0.43), picked the same winners (4 of 6) and trained less (19-22x against 14-18x below
    # fine-tuning everything). `--recipe paper` is the paper's one-proxy selection.
    predictor: str = Field("damoc", description=(
        "curve predictor of damoc.curves.PREDICTORS: final = the proxy's own score on the largest subset (one "
        "point, the paper's recipe), damoc / ats = extrapolated to the whole training set"))
    sizes: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0], min_length=1, description=(
        "fractions of the filtered set the proxies train on, one proxy each (e.g. [0.25, 0.5, 1.0]); the largest "
        "is the measured score; [1.0] is the paper's single proxy"))
    adaptive: bool = Field(True, description=(
        "spend only what the decision needs: every candidate gets the smallest size first, a candidate whose P(best) "
        "falls below p_drop stops, the others get the next size, and the run stops once the leader's P(best) "
        "reaches leaderboard.p_decisive or the budget is spent"))
    p_drop: float = Field(0.02, ge=0, lt=0.5, description="adaptive: a P(best) below this stops a candidate")
    budget: float = Field(1.0, gt=0, description=(
        "adaptive: proxy optimizer steps allowed, as a multiple of today's recipe (one proxy per candidate on the "
        "whole filtered set)"))

    @field_validator("sizes")
    @classmethod
    def _nested(cls, v: list[float]) -> list[float]:
        if any(not 0 < x <= 1 for x in v):
            raise ValueError("every size is a fraction of the filtered set in (0, 1]")
        if len(set(v)) != len(v):
            raise ValueError("sizes must be distinct")
        return sorted(v)

    @model_validator(mode="after")
    def _one_size_ranks_by_its_score(self) -> "SelectSection":
        # A config that asks for fewer proxy sizes than the default predictor extrapolates from (select.sizes=[1.0])
        # and names no predictor means the paper's selection: rank by the measured score. A predictor named with
        # too few sizes stays an error (damoc.pipeline.plan says which setting to change).
        from damoc.curves import get_predictor

        if "predictor" not in self.model_fields_set and len(self.sizes) < get_predictor(self.predictor).min_points:
            self.__dict__["predictor"] = "final"     # not setattr: validate_assignment would re-enter this validator
        return self

    @field_validator("predictor")
    @classmethod
    def _known_predictor(cls, v: str) -> str:
        from damoc.curves import PREDICTORS

        try:
            return PREDICTORS.entry(v).name
        except UnknownNameError as e:        # a ValueError names the setting: select.predictor
            raise ValueError(f"{e.message}; {e.hint}" if e.hint else e.message) from None


class LeaderboardSection(_Section):
    """How sure a pick must be. Rows carry P(best), the probability that the candidate is the true winner (a paired
    bootstrap over the test items); the pick is 'too close to call' while the leader's P(best) is below
    `p_decisive`, and the rows marked are the leader and every candidate whose P(best) reaches `p_contender`."""

    tolerance: float = Field(1.0, ge=0, description=(
        "runs without per-item scores (made before P(best)): a gap to the leader at or below this (in score units: "
        "percent points for the built-in metrics) is 'too close to call' with one seed; with two or more seeds the "
        "seed-to-seed spread is used"))
    p_decisive: float = Field(0.9, gt=0.5, le=1, description="the leader's P(best) at which the pick is called")
    p_contender: float = Field(0.05, gt=0, lt=0.5, description="a P(best) at or above this keeps a candidate in "
                                                                "contention (marked 'too close to call')")
    resamples: int = Field(2000, ge=100, description="bootstrap resamples of the test items for P(best)")


class ExecutorSection(_Section):
    """Where the worker processes run (docs/run.md, "How a run executes" and "Clusters")."""

    kind: str = Field("local", description=(
        "local: this machine (one worker per GPU, or as many CPU workers as the cores allow); ray: one Ray task per "
        "worker job (pip install 'damoc[cluster]')"))
    pool: Literal["auto", "all", "candidate"] = Field("auto", description=(
        "auto: on CPU one worker per core's share (`workers`) taking candidates largest first, or one worker for "
        "everything when only one fits; one worker per candidate on GPUs and on Ray. all: one worker serves every "
        "candidate in turn. candidate: one worker process per candidate"))
    workers: int = Field(0, ge=0, description=(
        "CPU workers at once on this machine; 0 = as many as the cores allow for the threads each uses (and the "
        "memory for the pre-flight estimate), 1 = serial"))
    gpus: str = Field("auto", description="auto | none | comma-separated CUDA device ids, e.g. 0,1")
    address: str = Field("", description=(
        "ray: empty = start a local Ray instance for this run; auto = the cluster this machine joined (ray start); "
        "ray://host:10001 = a remote cluster through Ray Client"))
    max_retries: int = Field(3, ge=0, description="ray: retries of a task lost with its node (cells resume)")
    gpu_memory_gb: float = Field(0.0, ge=0, description=(
        "ray: memory of one GPU of the cluster; sizes num_gpus per candidate from the pre-flight estimate "
        "(0 = one GPU per candidate)"))

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from damoc.pipeline.executors import EXECUTORS, unavailable

        try:
            name = EXECUTORS.entry(v).name
        except UnknownNameError as e:
            raise ValueError(f"{e.message}; {e.hint}" if e.hint else e.message) from None
        why = unavailable(name)
        if why:
            raise ValueError(why)
        return name


class RunConfig(BaseModel):
    """Everything a run needs, fully resolved and written to `<run>/config.json`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    mode: Literal[MODES] = "damoc"                  # type: ignore[valid-type]
    ft: Literal[FT_CHOICES] = "full"                # type: ignore[valid-type]
    variant: Literal["chat", "base"] = Field("chat", description=(
        "which checkpoint of each candidate is fine-tuned: chat (the paper for PubMedQA, BillSum, SQuAD) or base "
        "(the paper for Alpaca; no pruning then)"))
    candidates: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    label: str = ""
    dataset: DatasetSection = Field(default_factory=DatasetSection)
    filter: FilterSection = Field(default_factory=FilterSection)
    compress: CompressParams = Field(default_factory=CompressParams)
    prune: PruneParams = Field(default_factory=PruneParams)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    select: SelectSection = Field(default_factory=SelectSection)
    leaderboard: LeaderboardSection = Field(default_factory=LeaderboardSection)
    executor: ExecutorSection = Field(default_factory=ExecutorSection)
    device: str = "auto"
    threads: int = Field(0, ge=0, description=(
        "torch threads of a candidate's worker; 0 = settings.threads, else automatic: 1 on CPU when every "
        "candidate is under 100M parameters (dispatch-bound), torch's default otherwise. The shared data stages "
        "run alone and take every core"))

    @field_validator("candidates", mode="before")
    @classmethod
    def _split_names(cls, v: Any) -> Any:
        if isinstance(v, str):                     # "a,b,c" from --set or an env var
            v = [s for s in (p.strip() for p in v.split(",")) if s]
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, v: Any) -> Any:
        if isinstance(v, int):
            return [v]
        if isinstance(v, str):
            return [int(s) for s in v.split(",") if s.strip()]
        return v

    @model_validator(mode="after")
    def _distinct(self) -> "RunConfig":
        if len(set(self.candidates)) != len(self.candidates):
            dup = sorted({c for c in self.candidates if self.candidates.count(c) > 1})
            raise ValueError(f"candidates listed twice: {', '.join(dup)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        return self

    # -- convenience ------------------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        return methods_of(self.ft)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def replace(self, **changes: Any) -> "RunConfig":
        return validate_config({**self.to_dict(), **changes})


def methods_of(ft: str) -> list[str]:
    """The fine-tune methods a run's `ft` setting stands for."""
    return FINETUNE_METHODS.names() if ft == BOTH else [ft]


# -- loading, overrides, errors ---------------------------------------------------------------------

def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML, TOML or JSON file to a plain dict (not validated yet)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"config file {p} not found", "pass an existing .yaml/.toml/.json file to --config")
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except Exception as e:  # every parser has its own error class; the message is what matters
        raise ConfigError(f"{p}: cannot parse ({e})", "check the file's syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of settings, got {type(data).__name__}",
                          "write keys like `mode: damoc` at the top level")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value); the value is read as YAML so 0.1, true, [0, 1] get their types."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r} is not key=value", "write e.g. --set filter.ratio=0.2")
    import yaml
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, (dict, list)) or value is None:
        pass
    elif not isinstance(value, (int, float, bool)):
        value = raw.strip()                         # keep strings verbatim (e.g. "01" or "a: b")
    return key.split("."), value


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _section_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    info = model.model_fields.get(name)
    ann = getattr(info, "annotation", None)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one `--set` to a raw config dict, checking the key path against the schema (did-you-mean)."""
    path, value = parse_override(item)
    model: type[BaseModel] | None = RunConfig
    node = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if model is not None:
            names = _field_names(model)
            if part not in names:
                alt = part.replace("-", "_")
                if alt in names:
                    part = alt
                else:
                    where = ".".join(path[:depth]) or "the run config"
                    raise ConfigError(f"--set {item!r}: {where} has no setting {part!r}", _did_you_mean(part, names))
        if last:
            node[part] = value
            return
        sub = node.get(part)
        if not isinstance(sub, dict):
            if sub is not None and model is not None and _section_model(model, part) is None:
                raise ConfigError(f"--set {item!r}: {'.'.join(path[:depth + 1])} is a value, not a section",
                                  f"write --set {'.'.join(path[:depth + 1])}=VALUE")
            sub = {}
            node[part] = sub
        node = sub
        model = _section_model(model, part) if model is not None else None


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"


def _describe(err: ValidationError, source: str) -> ConfigError:
    lines, hints = [], []
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ())]
        where = ".".join(loc) or "(top level)"
        if e.get("type") == "extra_forbidden":
            model: type[BaseModel] | None = RunConfig
            for part in loc[:-1]:
                model = _section_model(model, part) if model is not None else None
            known = _field_names(model) if model is not None else []
            lines.append(f"{where}: unknown setting")
            hints.append(f"{where}: {_did_you_mean(loc[-1], known)}")
        elif e.get("type") == "literal_error":
            import re
            choices = re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))
            lines.append(f"{where}: {e.get('input')!r} is not one of {', '.join(choices)}")
            close = difflib.get_close_matches(str(e.get("input")), choices, n=1, cutoff=0.5)
            if close:
                hints.append(f"{where}: did you mean {close[0]!r}?")
        else:
            lines.append(f"{where}: {e.get('msg')} (got {e.get('input')!r})")
    msg = f"invalid run config{' in ' + source if source else ''}: " + "; ".join(lines)
    return ConfigError(msg, "; ".join(hints) or "fix the value(s) above (see docs/run.md for every setting)")


def validate_config(data: Mapping[str, Any], source: str = "") -> RunConfig:
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as e:
        raise _describe(e, source) from None


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (),
                base: Mapping[str, Any] | None = None) -> RunConfig:
    """File (optional) < `base` values (CLI flags) < `--set` overrides, validated."""
    data: dict[str, Any] = read_config_file(path) if path else {}
    for k, v in (base or {}).items():
        _deep_set(data, k.split("."), v)
    for item in overrides:
        apply_override(data, item)
    return validate_config(data, str(path) if path else "")


def _deep_set(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write a config as YAML (or TOML/JSON by suffix) that `load_config` reads back to the same value."""
    from damoc.fsutil import atomic_write_text

    p = Path(path)
    data = config.to_dict()
    if p.suffix.lower() == ".json":
        atomic_write_text(p, json.dumps(data, indent=2) + "\n")
    elif p.suffix.lower() == ".toml":
        atomic_write_text(p, _to_toml(data))
    else:
        import yaml
        atomic_write_text(p, yaml.safe_dump(data, sort_keys=False))


def _to_toml(data: dict[str, Any]) -> str:
    """Small TOML writer for this config's shape (scalars, lists, nested tables; None is omitted)."""
    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {val(x)}" for k, x in v.items() if x is not None) + "}"
        return json.dumps(str(v))

    out: list[str] = []

    def table(prefix: str, d: dict[str, Any]) -> None:
        if prefix:
            out.append(f"\n[{prefix}]")
        for k, v in d.items():
            if v is not None and not isinstance(v, dict):
                out.append(f"{k} = {val(v)}")
        subs = {k: v for k, v in d.items() if isinstance(v, dict)}
        for k, v in subs.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(out).lstrip() + "\n"
