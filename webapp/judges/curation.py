"""Multi-agent rejection sampling (training.curation: by score or by debate) and adversarial optimisation
of a principle set (training.judges.adversarial), connected to the database: the generator agents from
registered checkpoints or a remote endpoint, retrieval examples from the corpus, pair files under
var/curation, and the optimised set registered as the next PrincipleSet version."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from django.conf import settings

from generation.backends import LocalEngineBackend, OpenAICompatibleBackend
from generation.checkpoint import CheckpointError, load_checkpoint
from training.curation import (CurationError, DebatePrinciples, Example, GeneratorAgent, RetrievalIndex, curate_pairs,
                               curate_pairs_by_debate)
from training.data.formats import FormatError
from training.data.prompts import PromptFileError, read_prompts
from training.judges.adversarial import (AdversarialError, PrincipleError, Principles, optimise_principles,
                                         result_summary)
from training.judges.data import load_labeled
from training.judges.llm import LLMJudge
from webapp.checkpoints.services import RegistryError, resolve_checkpoint
from webapp.corpus.models import Greeting, Label, PreferencePair
from webapp.corpus.services import import_file
from webapp.judges.models import JudgeVersion, PrincipleSet
from webapp.judges.principles import DEFAULT_RULES, DEFAULT_STRENGTHS, DEFAULT_WEAKNESSES
from webapp.judges.services import (active_judge, _checked_principle_set, _default_name, JudgeJobCancelled,
                                    JudgeServiceError, llm_endpoint, load_judge, register_judge, resolve_judge)


def curation_dir() -> Path:
    return Path(settings.VAR_DIR) / "curation"


def read_queries(path: Path, limit: int | None = None, field: str = "prompts_file") -> list[str]:
    """The distinct queries of any importable file (queries, alpaca, pairwise, labeled, verl), in order."""
    if not Path(path).is_file():
        raise JudgeServiceError(f"{field}: {path} does not exist")
    try:
        return read_prompts(path, field=field, formats=None, limit=limit, require=False)
    except PromptFileError as exc:
        raise JudgeServiceError(f"{exc.field}: cannot read queries: {exc.message}") from exc


def build_generator_agents(*, checkpoints: Sequence[str] = (), temperatures: Sequence[float] = (0.8,),
                           personas: Sequence[str] = ("",), n: int = 2, max_new_tokens: int = 96,
                           remote_url: str = "", remote_model: str = "", remote_api_key: str = ""):
    """One agent per (source, temperature), personas taken in turn. Sources: registered checkpoints
    (the local engine; none named and no remote -> the active checkpoint) and an OpenAI-compatible
    server's /v1/completions."""
    sources = []
    for identifier in (checkpoints or ([] if remote_url else [None])):
        try:
            checkpoint = resolve_checkpoint(identifier)
        except RegistryError as exc:
            raise JudgeServiceError(f"checkpoints: {exc}") from exc
        problem = checkpoint.missing_files()
        if problem:
            raise JudgeServiceError(f"checkpoints: {checkpoint.name}: {problem}")
        try:
            model, tokenizer = load_checkpoint(Path(checkpoint.path), expected_config=checkpoint.model_config or None)
        except CheckpointError as exc:
            raise JudgeServiceError(f"checkpoints: {exc}") from exc
        sources.append((checkpoint.name, LocalEngineBackend.from_model(model, tokenizer,
                                                                       max_slots=settings.ENGINE_MAX_SLOTS)))
    if remote_url:
        if not remote_model:
            raise JudgeServiceError("remote_model: name the model the remote server serves")
        sources.append((f"remote:{remote_model}", OpenAICompatibleBackend(remote_url, remote_model,
                                                                          api_key=remote_api_key or None)))
    personas = list(personas) or [""]
    agents = []
    for source_name, backend in sources:
        for temperature in temperatures:
            persona = personas[len(agents) % len(personas)]
            name = f"{source_name}@t{temperature:g}" + (f"/{persona}" if persona else "")
            agents.append(GeneratorAgent(name, backend, n=n, temperature=temperature, persona=persona,
                                         max_new_tokens=max_new_tokens))
    return agents


def curate_preference_pairs(*, prompts_file: Path, agents, judge_names: Sequence[str] = (),
                            exclude_files: Sequence[Path] = (), config=None, max_prompts: int | None = None,
                            workdir: Path | None = None, name: str | None = None, import_to_corpus: bool = False,
                            on_progress=None, progress_bar: bool = True) -> dict:
    """Run rejection sampling with registered judges (the active one by default); write the pair file
    under var/curation/NAME.json. Queries of `exclude_files` (evaluation data) are never used as prompts.
    Returns {pairs_file, stats, completed, judges}; raises JudgeServiceError (JudgeJobCancelled when stopped)."""
    name, output, queries, exclude = _curation_inputs(name, prompts_file, exclude_files, max_prompts)
    versions = [resolve_judge(j) for j in judge_names] if judge_names else [resolve_judge(None)]
    judges = {version.name: load_judge(version) for version in versions}
    try:
        result = curate_pairs(queries, agents, judges, config, exclude_queries=exclude, workdir=workdir,
                              output=output, on_progress=on_progress, progress_bar=progress_bar)
    except CurationError as exc:
        raise JudgeServiceError(str(exc)) from exc
    return _curation_report(result, name, import_to_corpus, judges=list(judges))


def _curation_inputs(name, prompts_file, exclude_files, max_prompts) -> tuple[str, Path, list[str], list[str]]:
    """(name, the pair file to write, the prompts, the evaluation queries never to use); errors name the field."""
    name = name or _default_name("pairs")
    output = curation_dir() / f"{name}.json"
    if output.exists():
        raise JudgeServiceError(f"name: {output} already exists; pick another name")
    queries = read_queries(Path(prompts_file), limit=max_prompts)
    if not queries:
        raise JudgeServiceError(f"prompts_file: {prompts_file} has no queries")
    exclude = []
    for path in exclude_files:
        exclude += read_queries(Path(path), field="exclude_files")
    return name, output, queries, exclude


def _curation_report(result, name: str, import_to_corpus: bool, **extra) -> dict:
    if not result.completed:
        done = result.stats.get("candidates_judged", result.stats.get("candidates_debated"))
        raise JudgeJobCancelled(f"curation {name} stopped after {result.stats['prompts_resumed']} resumed prompts and "
                                f"{done} judged candidates; no pair file written")
    report = {"pairs_file": str(result.output), "completed": True, **extra, "stats": result.stats}
    if import_to_corpus and result.records:
        summary = import_file(result.output, "pairwise", progress=False, origin=f"curation:{name}")
        report["imported"] = str(summary)
    return report


RETRIEVAL_LIMIT = 20_000  # the newest well-rated greetings indexed for few-shot retrieval


def retrieval_examples(limit: int = RETRIEVAL_LIMIT):
    """Well-rated corpus greetings as training.curation.Example: more good labels than bad ones, or the
    chosen side of a preference pair (what the corpus says people liked)."""
    from django.db.models import Count, F, Q

    labelled = (Greeting.objects.annotate(good=Count("labels", filter=Q(labels__value=Label.Value.GOOD)),
                                          bad=Count("labels", filter=Q(labels__value=Label.Value.BAD)))
                .filter(good__gt=F("bad")).values_list("id", flat=True))
    ids = set(labelled) | set(PreferencePair.objects.values_list("chosen_id", flat=True))
    rows = (Greeting.objects.filter(id__in=ids).order_by("-id").values_list("id", "query__text", "text")[:limit])
    return [Example(str(pk), query, text) for pk, query, text in rows]


def debate_principles():
    """The strengths, weaknesses and rules the debate agents use: the active judge's principle set, else the
    newest 'default', else the built-in starting principles."""
    try:
        found = resolve_principle_set(None)
        return DebatePrinciples(tuple(found.strengths), tuple(found.weaknesses), tuple(found.rules))
    except JudgeServiceError:
        return DebatePrinciples(tuple(DEFAULT_STRENGTHS), tuple(DEFAULT_WEAKNESSES), tuple(DEFAULT_RULES))


def debate_client(llm_config: dict | None = None, principles=None):
    """The debate agents' endpoint: an LLMJudge client (retries, concurrency limit, token accounting) from the
    LLM judge's settings (JUDGE_LLM_*), overridden by llm_config."""
    endpoint = llm_endpoint(llm_config, "the debate agents need an LLM endpoint")
    rules = list(principles.rules) if principles and principles.rules else ["只有在各方面都好时才给 1。"]
    return LLMJudge(endpoint, rules=rules, name="debate")


def curate_preference_pairs_by_debate(*, prompts_file: Path, agents, exclude_files: Sequence[Path] = (), config=None,
                                      max_prompts: int | None = None, workdir: Path | None = None,
                                      name: str | None = None, import_to_corpus: bool = False, k: int = 3,
                                      llm_config: dict | None = None, on_progress=None,
                                      progress_bar: bool = True) -> dict:
    """Rejection sampling by debate (training.curation.debate): few-shot examples retrieved from the corpus's
    well-rated greetings (evaluation queries excluded), the agents on the LLM judge's endpoint, pairs written
    under var/curation/NAME.json. Returns {pairs_file, stats, completed, judges, endpoint}."""
    name, output, queries, exclude = _curation_inputs(name, prompts_file, exclude_files, max_prompts)
    principles = debate_principles()
    client = debate_client(llm_config, principles)
    index = RetrievalIndex(retrieval_examples()) if k else None
    try:
        result = curate_pairs_by_debate(queries, agents, client, config, index=index, k=k, principles=principles,
                                        exclude_queries=exclude, workdir=workdir, output=output,
                                        on_progress=on_progress, progress_bar=progress_bar)
    except CurationError as exc:
        raise JudgeServiceError(str(exc)) from exc
    return _curation_report(result, name, import_to_corpus, judges=["debate"],
                            endpoint={"base_url": client.config.base_url, "model": client.config.model})


def resolve_principle_set(identifier: str | None) -> PrincipleSet:
    """A principle set by id, NAME (its newest version) or NAME:VERSION; None: the active LLM judge's,
    else the newest 'default'."""
    if not identifier:
        active = active_judge()
        if active is not None and active.principle_set_id:
            return active.principle_set
        found = PrincipleSet.objects.filter(name="default").order_by("-version").first()
    elif identifier.isdigit():
        found = PrincipleSet.objects.filter(pk=int(identifier)).first()
    else:
        name, _, version = identifier.partition(":")
        query = PrincipleSet.objects.filter(name=name)
        if version:
            if not version.isdigit():
                raise JudgeServiceError(f"principle_set: version must be a number in {identifier!r}")
            query = query.filter(version=int(version))
        found = query.order_by("-version").first()
    if found is None:
        raise JudgeServiceError(f"principle_set: no principle set {identifier or 'default'!r}")
    return found


def optimise_principle_set(*, principle_set: PrincipleSet, labelled_file: Path, llm_config: dict | None = None,
                           settings_=None, register_llm_judge: bool = False, on_progress=None,
                           progress_bar: bool = True) -> dict:
    """Adversarial optimisation of `principle_set`'s rules against the LLM endpoint (settings, overridden by
    llm_config); the best set, when it improved, is saved as the next version of the same name (parent = the
    start) and optionally registered as an LLM judge. Returns the rounds summary plus the new version."""
    _checked_principle_set(principle_set)
    endpoint = llm_endpoint(llm_config, "the LLM endpoint is not configured")
    try:
        start = Principles(rules=principle_set.rules, strengths=principle_set.strengths,
                           weaknesses=principle_set.weaknesses)
    except (TypeError, ValueError) as exc:
        raise JudgeServiceError(f"cannot start adversarial optimisation: {exc}") from exc
    if not Path(labelled_file).is_file():
        raise JudgeServiceError(f"labelled_file: {labelled_file} does not exist")
    try:
        labelled = load_labeled(Path(labelled_file))
    except (FormatError, ValueError) as exc:
        raise JudgeServiceError(f"labelled_file: {exc}") from exc
    try:
        result = optimise_principles(start, endpoint, labelled, settings_, judge_name=f"{principle_set}",
                                     on_progress=on_progress, progress_bar=progress_bar)
    except (AdversarialError, PrincipleError) as exc:
        raise JudgeServiceError(str(exc)) from exc
    summary = result_summary(result)
    summary["start"] = {"id": principle_set.pk, "name": principle_set.name, "version": principle_set.version}
    summary["saved"] = None
    if result.improved:
        accepted = [r["round"] for r in result.rounds if r["accepted"]]
        saved = _checked_principle_set({"name": principle_set.name, "rules": list(result.best.rules),
                                        "strengths": list(result.best.strengths),
                                        "weaknesses": list(result.best.weaknesses),
                                        "note": f"adversarial optimisation from v{principle_set.version}: "
                                                f"rounds {accepted} accepted"})
        saved.parent = principle_set
        saved.save(update_fields=["parent"])
        summary["saved"] = {"id": saved.pk, "name": saved.name, "version": saved.version}
        if register_llm_judge:
            version = register_judge(kind=JudgeVersion.Kind.LLM, name=f"llm-{saved.name}-v{saved.version}",
                                     principle_set=saved, config={k: v for k, v in (llm_config or {}).items()
                                                                  if k != "api_key"},
                                     metrics={"adversarial": {"rounds": len(result.rounds)}})
            summary["judge"] = version.name
    if not result.completed:
        summary["cancelled"] = True
    return summary
