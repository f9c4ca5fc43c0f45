"""Config x candidates -> the cells of a run.

A cell is one (candidate x stage) unit of work with its own folder and completion marker (rundir.py). Shared data
stages live under the pseudo-candidate `_data`. A fine-tune cell also evaluates the model it trained while the
model is still in memory (saving a 7B proxy just to reload it would cost more than the evaluation), and records
both timings.

    mode damoc         _data/prepare, _data/filter, _data/compress; per candidate: prune, finetune-<m>-s<seed>
    mode ground-truth  _data/prepare; per candidate: finetune-<m>-s<seed> on the whole training set
    mode zero-shot     _data/prepare; per candidate: eval-zero-shot
    mode few-shot      _data/prepare; per candidate: eval-few-shot (k examples from the training set)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError, DamocError, UnknownNameError
from damoc.pipeline.cells import (CellSpec, CompressCell, EvalCell, FilterCell, FinetuneCell, PrepareCell, PruneCell,
                                  Role)
from damoc.pipeline.cells.data import CompressCellParams, FilterCellParams, PrepareParams
from damoc.pipeline.cells.scoring import EvalCellParams, FinetuneCellParams
from damoc.pipeline.config import RunConfig
from damoc.pipeline.recipes import CandidateFacts, StageDecision, candidate_stages, data_stages
from damoc.pipeline.rundir import DATA_CANDIDATE
from damoc.settings import Settings


@dataclass
class CandidatePlan:
    name: str
    chat_path: str | None
    base_path: str | None
    model_path: str | None          # the checkpoint that is fine-tuned/evaluated (chat or base, per `variant`)
    merge_supported: bool = False
    merge_reason: str = ""
    parameters: int | None = None
    stages: list[StageDecision] = field(default_factory=list)
    error: str = ""                 # set when the candidate cannot run at all (shown as failed)
    source: str = "registry"        # registry | folder (an ad-hoc model folder given as a candidate)
    needs_remote_code: bool = False  # config.json has auto_map (a fact)
    trust_remote_code: bool = False  # the user opted in for this candidate (registry add --trust-remote-code)
    # a dry run's catalog candidate that is not downloaded yet: what `damoc registry pull` would fetch (planned as
    # if it were local; such a plan sizes a pick and never starts)
    download: str = ""
    download_bytes: int | None = None

    def decision(self, stage: str) -> StageDecision | None:
        return next((s for s in self.stages if s.stage == stage), None)


@dataclass
class Plan:
    mode: str
    config: dict[str, Any]
    candidates: list[CandidatePlan]
    data: list[StageDecision]
    cells: list[CellSpec]
    preflight: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    # -- views ------------------------------------------------------------------------------------
    @property
    def data_cells(self) -> list[CellSpec]:
        return [c for c in self.cells if c.candidate == DATA_CANDIDATE]

    def cells_of(self, candidate: str) -> list[CellSpec]:
        return [c for c in self.cells if c.candidate == candidate]

    def candidate(self, name: str) -> CandidatePlan:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def runnable(self) -> list[CandidatePlan]:
        return [c for c in self.candidates if not c.error and not c.download]

    @property
    def downloads(self) -> list[CandidatePlan]:
        """Candidates a dry run planned although they are not downloaded (`make_plan(assume_downloads=True)`)."""
        return [c for c in self.candidates if c.download]

    @property
    def skipped(self) -> list[dict[str, str]]:
        """Every stage that will not run, with the reason (data stages under `_data`)."""
        out = [{"candidate": DATA_CANDIDATE, "stage": d.stage, "reason": d.reason} for d in self.data if not d.enabled]
        for c in self.candidates:
            if c.error:
                out.append({"candidate": c.name, "stage": "*", "reason": c.error})
                continue
            out += [{"candidate": c.name, "stage": d.stage, "reason": d.reason} for d in c.stages if not d.enabled]
            out += [{"candidate": c.name, "stage": d.stage, "reason": d.reason}
                    for d in c.stages if d.enabled and d.reason]            # enabled with a caveat
        return out

    # -- (de)serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "config": self.config,
                "candidates": [_candidate_dict(c) for c in self.candidates],
                "data": [d.to_dict() for d in self.data], "cells": [c.to_dict() for c in self.cells],
                "preflight": self.preflight, "warnings": list(self.warnings)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        known = {f.name for f in fields(CandidatePlan)}
        cands = [CandidatePlan(**{**{k: v for k, v in c.items() if k in known},   # a newer version's keys: ignored
                                  "stages": [StageDecision(**s) for s in c.get("stages", [])]})
                 for c in d.get("candidates", [])]
        return cls(mode=d["mode"], config=d["config"], candidates=cands,
                   data=[StageDecision(**s) for s in d.get("data", [])],
                   cells=[CellSpec.from_dict(c) for c in d.get("cells", [])],
                   preflight=d.get("preflight"), warnings=list(d.get("warnings", [])))


def _candidate_dict(c: CandidatePlan) -> dict[str, Any]:
    """A candidate's plan entry; a dry run's download fields only when set, so a run's plan.json stays readable by
    the versions before them (their CandidatePlan takes no unknown key)."""
    d = {**asdict(c), "stages": [s.to_dict() for s in c.stages]}
    if not c.download:
        d.pop("download")
        d.pop("download_bytes")
    return d


# -- candidate resolution ----------------------------------------------------------------------------

def _is_model_dir(p: Path) -> bool:
    try:
        return p.is_dir() and (p / "config.json").is_file()
    except (OSError, ValueError):          # a name too long for a path, or a NUL in it: not a folder
        return False


def folder_candidate_name(folder: Path) -> str:
    """The candidate name of a model folder given directly: the registry's name rule applied to the folder's name
    (`.../tiny/chat` -> `tiny`). When the folder's own name breaks the rule (a newline, quotes, `$(...)`), a hash
    of the full path is added, so two hostile folders never end up with the same name."""
    from damoc.fsutil import stable_hash
    from damoc.registry.models import NAME_RE, ModelRef
    from damoc.registry.resolve import default_name

    name = default_name(ModelRef(str(folder)))
    label = folder.name if folder.name not in ("chat", "base", "instruct") else folder.parent.name
    if not NAME_RE.match(label):
        name = f"{name[:90]}-{stable_hash(str(folder), length=6)}"
    return name


def _not_downloaded(settings: Settings, name: str, variant: str) -> CandidatePlan | None:
    """A registry candidate whose Chat is on the hub, not on this machine, planned as a dry run sees it: with what
    the download takes and the sparse-merge answer the registry has (local files, else the hub check). None for a
    candidate that is not simply waiting for a download (a folder gone, an unreadable checkpoint)."""
    from damoc.registry.models import human_bytes
    from damoc.registry.store import RegistryStore

    c = RegistryStore(settings).get(name)
    cap = c.capability
    if cap is None or cap.chat_path is not None or c.chat.kind != "hub":
        return None
    if variant == "base" and c.base is None:
        return None
    parts = [f"Chat {c.chat.id}" if cap.chat_path is None else ""]
    if c.base is not None and cap.base_path is None:
        parts.append(f"Base {c.base.id}")
    need = cap.download_bytes
    what = " and ".join(p for p in parts if p) + (f", {human_bytes(need, approx=cap.download_estimated)}"
                                                   if need else ", size unknown")
    hub = cap.hub_check
    if c.base is None:
        merge_ok, reason = False, cap.merge_reason
    elif hub is not None:
        merge_ok, reason = hub.merge_supported, ("" if hub.merge_supported else hub.merge_reason)
    else:
        merge_ok, reason = True, ""       # planned as supported; the files decide once downloaded
    return CandidatePlan(name=c.name, chat_path=None, base_path=None, model_path=None, merge_supported=merge_ok,
                         merge_reason=reason, parameters=c.chat_facts.parameters, source="registry",
                         needs_remote_code=c.needs_remote_code, trust_remote_code=c.trust_remote_code,
                         download=what, download_bytes=need)


def resolve_candidate(settings: Settings, name: str, variant: str, *, assume_downloads: bool = False
                      ) -> CandidatePlan:
    """A registry name (or a model folder used as an ad-hoc Chat candidate without Base) -> CandidatePlan.

    Unknown names raise `UnknownNameError` (did-you-mean): a typo should stop the run before it starts.
    Known candidates whose files are missing come back with `error` set, so the rest of the run goes on. A folder's
    name is never trusted as a candidate name: it gets a safe one (`folder_candidate_name`).
    """
    from damoc.registry import resolve_candidate as registry_resolve  # light: TinyDB, no torch

    p = Path(name).expanduser()
    folder = _is_model_dir(p)
    trust = needs_remote = False
    if folder:
        chat, base, merge_ok, merge_reason, params = str(p.resolve()), None, False, "ad-hoc folder: no Base", None
        cname = folder_candidate_name(p.resolve())
        needs_remote = _needs_remote_code(p)
    else:
        try:
            is_file = p.is_file()
        except (OSError, ValueError):
            is_file = False
        if is_file:
            raise ConfigError(f"candidate {name!r} is a file, not a model folder",
                              f"give the folder that holds it: {p.resolve().parent}")
        try:
            r = registry_resolve(settings, name)
        except UnknownNameError:
            raise
        except DamocError as e:     # known but not usable here (not downloaded, unreadable): this one fails
            planned = _not_downloaded(settings, name, variant) if assume_downloads else None
            if planned is not None:
                return planned
            return CandidatePlan(name=name, chat_path=None, base_path=None, model_path=None,
                                 error=e.message + (f" ({e.hint})" if e.hint else ""))
        cname, chat, base = r.name, r.chat_path, r.base_path
        merge_ok, merge_reason, params = r.merge_supported, r.merge_reason, r.parameters
        trust, needs_remote = r.trust_remote_code, r.needs_remote_code
    model = base if variant == "base" else chat
    error = ""
    if model is None:
        error = (f"no {variant} checkpoint registered" +
                 (" (the paper fine-tunes Base models only for Alpaca-style data; use variant=chat)"
                  if variant == "base" else ""))
    elif not Path(model).exists():
        error = f"{variant} checkpoint {model} not found on disk (pull it: damoc registry pull {cname})"
    return CandidatePlan(name=cname, chat_path=chat, base_path=base, model_path=model, merge_supported=merge_ok,
                         merge_reason=merge_reason, parameters=params, error=error,
                         source="folder" if folder else "registry", needs_remote_code=needs_remote,
                         trust_remote_code=trust)


def _needs_remote_code(folder: Path) -> bool:
    """config.json declares its own model code (`auto_map`): a fact to show, never a reason to run it."""
    try:
        from damoc.registry.capability import read_config

        return bool(read_config(folder).get("auto_map"))
    except DamocError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or a.samefile(b)
    except OSError:
        return False


def _abs(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else path


def _filter_needs_scorer(method: str) -> bool:
    from damoc.filters import method_info

    return bool(method_info(method)["needs_scorer"])


def _resolve_model_ref(settings: Settings, ref: str, cands: list[CandidatePlan], key: str = "compress.model") -> str:
    """A scorer/compressor/rewriter reference: empty = the smallest runnable candidate's Chat, else a name or a
    folder."""
    if not ref:
        pool = [c for c in cands if not c.error and c.chat_path]
        if not pool:                # a dry run over candidates still to download: the one it would use
            later = [c for c in cands if c.download]
            if later:
                pick = min(later, key=lambda c: c.parameters or float("inf"))
                return f"{pick.name} (its Chat, once downloaded)"
            raise ConfigError(f"no candidate can serve as the scoring model ({key})",
                              f"set {key} to a model folder or registry name")
        return min(pool, key=lambda c: c.parameters or float("inf")).chat_path or ""
    for c in cands:
        if c.name == ref and c.chat_path:
            return c.chat_path
    from damoc.registry.resolve import model_folder

    return str(model_folder(settings, ref, setting=key))


# -- the plan ------------------------------------------------------------------------------------------

def _data_file(ref: str, flag: str) -> Path:
    """The file a dataset reference names (a path, or LLaMA-Factory's `dataset_info.json:NAME`)."""
    from damoc.data import resolve_source
    from damoc.errors import DataError

    try:
        return Path(resolve_source(ref).path)
    except DataError as e:
        raise ConfigError(f"{flag}: {e.message}", e.hint or f"check the path given to {flag}") from None


def make_plan(settings: Settings, config: RunConfig, *, with_preflight: bool = True,
              assume_downloads: bool = False) -> Plan:
    """The cells of a run. `assume_downloads` (a dry run) plans catalog candidates that are not downloaded yet as if
    they were, each with what its download takes (`CandidatePlan.download`): such a plan sizes a pick (cells,
    downloads, pre-flight) and `start_run` refuses it."""
    if not config.dataset.train:
        raise ConfigError("no training dataset given", "pass --dataset FILE (or dataset.train in the config)")
    train = _data_file(config.dataset.train, "--dataset")
    test = _data_file(config.dataset.test, "--test") if config.dataset.test else None
    if test is not None and _same_file(train, test):
        raise ConfigError(f"--test is the training file itself ({train}): the scores would be measured on "
                          "training data", "give a held-out test file, or omit --test (10% of --dataset is then "
                          "held out)")
    if not config.candidates:
        raise ConfigError("no candidates given",
                          "pass --candidates NAME,NAME (see `damoc registry list`) or set candidates in the config")
    given = [str(c).strip() for c in config.candidates]
    if any(not c for c in given):
        raise ConfigError("an empty candidate name was given", "check the commas in --candidates")
    twice = sorted({c for c in given if given.count(c) > 1})
    if twice:
        raise ConfigError(f"candidate {twice[0]!r} given twice", "name each candidate once")
    config = config.replace(dataset={**config.dataset.model_dump(), "train": _abs(config.dataset.train),
                                     "test": _abs(config.dataset.test)})

    cands = [resolve_candidate(settings, n, config.variant, assume_downloads=assume_downloads)
             for n in config.candidates]
    for c in cands:
        facts = CandidateFacts(c.name, has_base=bool(c.base_path) or (bool(c.download) and c.merge_supported),
                               merge_supported=c.merge_supported,
                               merge_reason=c.merge_reason)
        c.stages = candidate_stages(config, facts)
    data = data_stages(config)
    warnings: list[str] = []
    if config.mode == "damoc" and config.filter.enabled and config.filter.ratio < 0.1 and not config.filter.count:
        warnings.append(f"filter.ratio={config.filter.ratio}: the paper found 5% breaks the ranking; 10% is safe")
    predictor = config.select.predictor
    if config.mode == "damoc":
        from damoc.curves import get_predictor

        need = get_predictor(predictor).min_points
        if len(config.select.sizes) < need:
            raise ConfigError(f"select.predictor {predictor} extrapolates from {need} proxy sizes at least; "
                              f"select.sizes has {len(config.select.sizes)}",
                              "set e.g. select.sizes=[0.25,0.5,1.0], or select.predictor=final")

    cells = _data_cells(settings, config, cands, data)
    prep = cells[0].key
    train_from = cells[-1].key                     # the last shared data cell: the proxies' training samples
    order = next((c.key for c in cells if c.kind == FilterCell.name), None)   # nested subsets follow its picks
    for c in cands:
        if c.error:
            continue
        if config.mode in ("zero-shot", "few-shot"):
            few = config.mode == "few-shot"
            params = EvalCellParams(**{**config.evaluate.model_dump(), "few_shot": config.evaluate.few_shot
                                       if few else 0})
            cells.append(EvalCell.make(c.name, EvalCell.stage(config.mode), inputs={Role.DATA: prep},
                                       params=params, seed=config.seeds[0]))
            continue
        inputs = {Role.DATA: prep, Role.TRAIN: train_from if config.mode == "damoc" else prep}
        prune = c.decision(PruneCell.name)
        if prune is not None and prune.enabled:
            cell = PruneCell.make(c.name, PruneCell.name, inputs={Role.DATA: prep},
                                  params=PruneCell.params_model(**prune.params))
            cells.append(cell)
            inputs[Role.MODEL] = cell.key
        proxy = config.mode == "damoc"
        sizes = config.select.sizes if proxy else [1.0]
        if order is not None and any(f < 1.0 for f in sizes):
            inputs[Role.ORDER] = order
        for m in config.methods:
            for f in sizes:
                params = FinetuneCellParams(hp=config.finetune.method(m).model_dump(),
                                            min_steps=config.finetune.proxy_min_steps if proxy else 0,
                                            deepspeed=config.finetune.deepspeed, bf16=config.finetune.bf16,
                                            evaluate=config.evaluate.model_dump())
                if f < 1.0:
                    params.subset = f
                for s in config.seeds:
                    cells.append(FinetuneCell.make(c.name, FinetuneCell.stage(m, s, f), inputs=inputs,
                                                   params=params, method=m, seed=s))

    preflight = None
    if with_preflight:
        names = [c.name for c in cands if not c.error and c.source == "registry"]
        preflight, warn = _preflight(settings, names, config) if names else (None, "")
        if warn:
            warnings.append(warn)
    return Plan(mode=config.mode, config=config.to_dict(), candidates=cands, data=data, cells=cells,
                preflight=preflight, warnings=warnings)


def _data_cells(settings: Settings, config: RunConfig, cands: list[CandidatePlan], data: list[StageDecision]
                ) -> list[CellSpec]:
    """The shared data cells, each reading the training samples of the one before it."""
    decided = {d.stage: d for d in data}
    prep = PrepareCell.make(DATA_CANDIDATE, PrepareCell.name, inputs={},
                            params=PrepareParams(**decided[PrepareCell.name].params, metric=config.evaluate.metric))
    cells = [prep]
    if decided[FilterCell.name].enabled:
        params = FilterCellParams(**config.filter.model_dump(), seed=config.seeds[0])
        if _filter_needs_scorer(config.filter.method):
            params.scorer_path = _resolve_model_ref(settings, config.filter.scorer, cands, "filter.scorer")
        cells.append(FilterCell.make(DATA_CANDIDATE, FilterCell.name, inputs={Role.TRAIN: cells[-1].key},
                                     params=params))
    if decided[CompressCell.name].enabled:
        params = CompressCellParams(
            **config.compress.model_dump(), model_path=_resolve_model_ref(settings, config.compress.model, cands),
            rewriter_path=(_resolve_model_ref(settings, config.compress.rewriter, cands, "compress.rewriter")
                           if config.compress.rewriter else None))
        cells.append(CompressCell.make(DATA_CANDIDATE, CompressCell.name, inputs={Role.TRAIN: cells[-1].key},
                                       params=params))
    return cells


def _preflight(settings: Settings, names: list[str], config: RunConfig) -> tuple[dict[str, Any] | None, str]:
    """The registry's pre-flight estimate (disk, memory, time); a failure is a warning, never a blocker."""
    from damoc.registry import preflight

    # the registry's estimator reads a flat dict (see damoc/registry/preflight.py PreflightConfig)
    method = config.finetune.method(config.methods[0])
    flat: dict[str, Any] = {"finetune": config.ft, "device": config.device,
                            "prune": config.mode == "damoc" and config.prune.enabled,
                            "lora_rank": config.finetune.lora.lora_r}
    if method.max_length:
        flat["seq_len"] = method.max_length
    if method.micro_batch:
        flat["batch_size"] = method.micro_batch
    try:
        res = preflight(settings, names, flat)
        out = res.to_dict()
        from damoc.registry.assess import merge_check
        from damoc.registry.store import RegistryStore

        store = RegistryStore(settings)
        for c in out["candidates"]:        # where each sparse-merge answer comes from: files, the hub, or unknown
            c["merge_check"] = merge_check(store.get(c["name"]))
    except DamocError as e:
        return None, f"pre-flight estimate failed: {e.message}"
    except Exception as e:  # an estimate must never stop a run
        return None, f"pre-flight estimate failed: {type(e).__name__}: {e}"
    return out, ""
