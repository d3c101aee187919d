"""Rejection sampling by debate (Retrieve, Debate, Judge, Reflect) against real HTTP: one local server
streams fixed candidates over /v1/completions (the generator agents) and answers the debate agents over
/v1/chat/completions from fixed tables, the way the agents would: positive and negative lists, a 0/1
judge, and a reflect agent that overturns with and without evidence."""
import json
import re
import socket

import pytest

from generation.backends import OpenAICompatibleBackend
from tests.training.test_llm_judge import ScriptedServer, completion
from training.curation import (CurationConfig, CurationError, DebatePrinciples, Example, GeneratorAgent,
                               RetrievalIndex, curate_pairs_by_debate, read_pair_file)
from generation.engine.json_constraint import parse_schema
from training.curation.debate import DEBATE_FILE, SCHEMAS, parse_answer, reflect_outcome
from training.judges.data import load_pairs
from training.judges.llm import LLMJudge, LLMJudgeConfig, parse_data_block

PRINCIPLES = DebatePrinciples(strengths=("情感真挚",), weaknesses=("催婚施压",), rules=("各方面都好才给 1",))

# (query, temperature) -> candidates
CANDIDATES = {
    ("七十寿宴", 0.7): ["福寿双全，松鹤长春，愿您安康", "祝您早日抱上重孙，儿孙赶紧结婚"],
    ("七十寿宴", 1.1): ["生日快乐", "岁岁平安，年年有余"],
    ("新年贺词", 0.7): ["新春大吉，万事胜意", "新年好"],
    ("新年贺词", 1.1): ["愿你新岁有光，所求皆如愿", "恭喜发财"],
}
# text -> (strengths, weaknesses, judge verdict, reflect answer)
KEEP = {"overturn": False, "verdict": None, "evidence": {"item": "", "quote": ""}, "reason": "维持"}


def overturn(verdict, item, quote):
    return {"overturn": True, "verdict": verdict, "evidence": {"item": item, "quote": quote}, "reason": "有证据"}


AGENT_ANSWERS = {
    "福寿双全，松鹤长春，愿您安康": (["情感真挚"], [], 1, KEEP),
    # the judge says 1; reflect overturns to 0 with a listed weakness quoted from the text: accepted
    "祝您早日抱上重孙，儿孙赶紧结婚": (["情感真挚"], ["催婚施压"], 1, overturn(0, "催婚施压", "赶紧结婚")),
    # reflect tries to turn 0 into 1 citing a point nobody listed: refused
    "生日快乐": ([], ["内容空泛"], 0, overturn(1, "有创意", "生日快乐")),
    # listed strength, but the quote is not in the text: refused
    "岁岁平安，年年有余": (["情感真挚"], ["陈词滥调"], 0, overturn(1, "情感真挚", "万事如意")),
    "新春大吉，万事胜意": (["情感真挚"], [], 1, KEEP),
    "新年好": ([], ["内容空泛"], 0, KEEP),
    "愿你新岁有光，所求皆如愿": (["情感真挚"], [], 1, KEEP),
    "恭喜发财": ([], ["陈词滥调"], 0, KEEP),
}
PROMPT = re.compile(r"请只生成一条祝福语：(.*?)(?:（参考范例：(.*)）)?<sep>$", re.S)

CORPUS = [Example("g1", "八十大寿祝福语", "松柏长青，福寿绵长"), Example("g2", "七十寿宴", "同一请求的答案不得当范例"),
          Example("g3", "奶奶寿宴祝福", "愿奶奶寿比南山"), Example("g4", "新年祝福语", "新年新气象"),
          Example("g5", "考试顺利文案", "逢考必过")]


class DebateWorld:
    """The server's behaviour; it records who asked for what."""

    def __init__(self, answers=AGENT_ANSWERS, broken_agent=None):
        self.answers, self.broken_agent = answers, broken_agent
        self.generations, self.chats = [], []  # (query, examples text), (agent, greeting)

    def __call__(self, body, n):
        if "messages" in body:
            agent = body["response_format"]["json_schema"]["name"]
            data = parse_data_block(next(m for m in body["messages"] if m["role"] == "user")["content"])
            self.chats.append((agent, data["greeting"]))
            if agent == self.broken_agent:
                return 200, completion("不是 JSON")
            strengths, weaknesses, verdict, reflect = self.answers[data["greeting"]]
            if agent == "reflect":
                assert data["judge"]["verdict"] == verdict and data["strengths"] == strengths
                answer = {**reflect, "verdict": verdict if reflect["verdict"] is None else reflect["verdict"]}
            else:
                answer = {"positive": {"strengths": strengths}, "negative": {"weaknesses": weaknesses},
                          "judge": {"verdict": verdict, "reason": "表"}}[agent]
            return 200, completion(json.dumps(answer, ensure_ascii=False))
        query, examples = PROMPT.search(body["prompt"]).groups()
        self.generations.append((query, examples or ""))
        texts = CANDIDATES[(query, body["temperature"])][: body["n"]]
        lines = [f"data: {json.dumps({'id': 'c', 'choices': [{'index': i, 'text': t, 'finish_reason': 'stop'}]}, ensure_ascii=False)}\n\n"
                 for i, t in enumerate(texts)]
        return 200, "".join(lines) + "data: [DONE]\n\n"


def agents_for(server):
    backend = OpenAICompatibleBackend(server.base_url.removesuffix("/v1"), "stand-in", timeout_s=5)
    return [GeneratorAgent("remote@t0.7", backend, n=2, temperature=0.7),
            GeneratorAgent("remote@t1.1", backend, n=2, temperature=1.1)]


def client_for(base_url):
    return LLMJudge(LLMJudgeConfig(base_url=base_url, model="stand-in", timeout=5, max_retries=0, max_concurrency=2),
                    rules=list(PRINCIPLES.rules), name="debate")


def run(server, tmp_path, name="run", **kwargs):
    return curate_pairs_by_debate(["七十寿宴", "新年贺词"], agents_for(server), client_for(server.base_url),
                                  CurationConfig(max_longer_share=None), index=RetrievalIndex(CORPUS), k=2,
                                  principles=PRINCIPLES, workdir=tmp_path / f"{name}.work",
                                  output=tmp_path / f"{name}.json", progress_bar=False, **kwargs)


def test_retrieval_returns_similar_greetings_but_never_the_same_or_an_excluded_query():
    index = RetrievalIndex(CORPUS)
    found = index.search("奶奶八十大寿", 2)
    assert [e["id"] for e in found] == ["g1", "g3"] and found[0]["similarity"] > found[1]["similarity"] > 0
    assert found[0] == {"id": "g1", "query": "八十大寿祝福语", "text": "松柏长青，福寿绵长", "similarity": found[0]["similarity"]}
    assert [e["id"] for e in index.search("七十寿宴", 5)] == ["g3", "g1"]  # its own query's answer is never handed over
    assert [e["id"] for e in index.search("奶奶八十大寿", 2, exclude_queries=["八十大寿祝福语"])] == ["g3", "g2"]
    assert index.search("逢考", 0) == [] and RetrievalIndex([]).search("新年", 3) == []


def test_pairs_come_only_from_accepted_verdicts_with_the_debate_as_provenance(tmp_path):
    world = DebateWorld()
    with ScriptedServer(world) as server:
        result = run(server, tmp_path)
    stats = result.stats
    assert stats["candidates_debated"] == 8 and stats["llm_requests"] == {a: 8 for a in ("positive", "negative", "judge", "reflect")}
    assert stats["judge_accepted"] == 4 and stats["final_accepted"] == 3  # one 1 overturned to 0
    assert stats["overturns"] == 1 and stats["overturns_refused"] == 2
    pairs = {(p.query, p.chosen, p.rejected) for p in load_pairs(result.output)}
    assert len(pairs) == 2
    finals = {text: 1 for text in ("福寿双全，松鹤长春，愿您安康", "新春大吉，万事胜意", "愿你新岁有光，所求皆如愿")}
    assert all(finals.get(chosen) == 1 and rejected not in finals for _, chosen, rejected in pairs)
    assert ("七十寿宴", "福寿双全，松鹤长春，愿您安康") in {(q, c) for q, c, _ in pairs}
    records = read_pair_file(result.output)
    debate = records[0]["provenance"]["debate"]
    assert records[0]["provenance"]["method"] == "debate" and debate["chosen"]["final"] == 1 == debate["chosen"]["judge"]
    assert debate["rejected"]["final"] == 0 and debate["retrieved"] == ["g3", "g1"]
    by_text = {c["text"]: c["debate"] for p in result.pairs for c in (p.chosen, p.rejected)}
    if "祝您早日抱上重孙，儿孙赶紧结婚" in by_text:
        assert by_text["祝您早日抱上重孙，儿孙赶紧结婚"]["overturn"] == "overturned"
    # the retrieved examples reached the generator agents as few-shot examples
    assert ("七十寿宴", "「愿奶奶寿比南山」；「松柏长青，福寿绵长」") in world.generations
    assert all("同一请求" not in examples for _, examples in world.generations)
    meta = json.loads((tmp_path / "run.meta.json").read_text())
    assert meta["method"] == "debate" and meta["stats"]["pairs"] == 2 and meta["retrieval"] == {"examples": 5, "k": 2}


def test_an_overturn_without_evidence_is_refused():
    strengths, weaknesses = ["情感真挚"], ["催婚施压"]
    text = "祝您早日抱上重孙，儿孙赶紧结婚"
    assert reflect_outcome(text, 1, strengths, weaknesses, overturn(0, "催婚施压", "赶紧结婚")) == (0, "overturned")
    assert reflect_outcome(text, 1, strengths, weaknesses, overturn(0, "用词不当", "赶紧结婚"))[1].startswith(
        "refused: evidence.item is not a listed weakness")
    assert reflect_outcome(text, 1, strengths, weaknesses, overturn(0, "催婚施压", "早生贵子")) == (
        1, "refused: evidence.quote is not in the candidate text")
    assert reflect_outcome(text, 1, strengths, weaknesses, overturn(0, "催婚施压", "婚")) == (
        1, "refused: evidence.quote is not in the candidate text")  # a lone character proves nothing
    # a listed weakness cannot turn a 0 into a 1: the evidence must be on the side of the new verdict
    assert reflect_outcome(text, 0, strengths, weaknesses, overturn(1, "催婚施压", "赶紧结婚"))[0] == 0
    assert reflect_outcome(text, 0, strengths, weaknesses, {**KEEP, "verdict": 0}) == (0, "kept")


def test_the_agents_schemas_are_flat_for_our_own_engine_and_both_answer_shapes_parse():
    for agent, schema in SCHEMAS.items():
        assert [f["name"] for f in parse_schema(schema)] == list(schema["properties"]), agent  # no SchemaError
    # the flat shape our engine writes, and the list / nested shape other endpoints may answer with
    assert parse_answer("positive", '{"strengths": "情感真挚；用词优美；"}') == {"strengths": ["情感真挚", "用词优美"]}
    assert parse_answer("negative", {"weaknesses": ["催婚施压"]}) == {"weaknesses": ["催婚施压"]}
    flat = parse_answer("reflect", '{"overturn": true, "verdict": 0, "evidence_item": "催婚施压", '
                                   '"evidence_quote": "赶紧结婚", "reason": "有证据"}')
    nested = parse_answer("reflect", {**KEEP, "overturn": True, "verdict": 0,
                                      "evidence": {"item": "催婚施压", "quote": "赶紧结婚"}, "reason": "有证据"})
    assert flat == nested and flat["evidence"] == {"item": "催婚施压", "quote": "赶紧结婚"}
    with pytest.raises(ValueError, match="at most 9 items"):
        parse_answer("negative", {"weaknesses": "；".join(f"缺点{i}" for i in range(10))})
    with pytest.raises(ValueError, match='"strengths" must be a text of points'):
        parse_answer("positive", {"strengths": 3})


def test_a_killed_run_resumes_without_asking_again_and_gives_the_same_pairs(tmp_path):
    with ScriptedServer(DebateWorld()) as server:
        whole = run(server, tmp_path, "whole")
    world = DebateWorld()
    with ScriptedServer(world) as server:
        stopped = run(server, tmp_path, "resumed", on_progress=lambda e: e.get("event") != "step")
        assert not stopped.completed and not (tmp_path / "resumed.json").exists()
        asked_before = (list(world.generations), list(world.chats))
        assert {q for q, _ in asked_before[0]} == {"七十寿宴"} and len(asked_before[1]) == 16
        rows = (tmp_path / "resumed.work" / DEBATE_FILE).read_text().splitlines()
        assert len(rows) == 2 + 4 * 4  # retrieve, generate, and four stages for each of four candidates
        resumed = run(server, tmp_path, "resumed")
    assert resumed.completed and resumed.stats["prompts_resumed"] == 1
    assert {q for q, _ in world.generations[2:]} == {"新年贺词"}  # the finished prompt was not generated again
    finished = {text for (query, _), texts in CANDIDATES.items() if query == "七十寿宴" for text in texts}
    assert len(world.chats) == 32 and not any(text in finished for _, text in world.chats[16:])  # nor debated again
    assert read_pair_file(resumed.output) == read_pair_file(whole.output)


def test_a_torn_log_resumes_mid_prompt(tmp_path):
    world = DebateWorld()
    with ScriptedServer(world) as server:
        run(server, tmp_path, on_progress=lambda e: e.get("event") != "step")
        log = tmp_path / "run.work" / DEBATE_FILE
        rows = log.read_text().splitlines()
        # killed while the last reflect answer was being written: a torn line, that stage only is done again
        log.write_text("\n".join(rows[:-1]) + "\n" + rows[-1][:15], encoding="utf-8")
        world.chats.clear()
        resumed = run(server, tmp_path)
    assert resumed.completed
    assert [a for a, _ in world.chats].count("reflect") == 5 and [a for a, _ in world.chats].count("positive") == 4


def test_bad_input_is_a_clear_error_and_writes_no_pairs(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ScriptedServer(DebateWorld()) as server:
        agents = agents_for(server)
        with pytest.raises(CurationError, match=rf"base_url: the positive agent's endpoint failed: .*127.0.0.1:{port}"):
            curate_pairs_by_debate(["七十寿宴"], agents, client_for(f"http://127.0.0.1:{port}/v1"),
                                   output=tmp_path / "p.json", workdir=tmp_path / "w", progress_bar=False)
        with pytest.raises(CurationError, match="prompts: no prompts to curate"):
            curate_pairs_by_debate(["", " "], agents, client_for(server.base_url), progress_bar=False)
        with pytest.raises(CurationError, match="base_url: the debate agents need an LLM endpoint"):
            curate_pairs_by_debate(["七十寿宴"], agents, None, progress_bar=False)
    world = DebateWorld(broken_agent="judge")
    with ScriptedServer(world) as server:
        with pytest.raises(CurationError, match="judge agent: the endpoint gave an invalid answer twice: first the "
                                                "answer is not JSON; after the repair request the answer is not JSON"):
            curate_pairs_by_debate(["七十寿宴"], agents_for(server), client_for(server.base_url),
                                   output=tmp_path / "p.json", progress_bar=False)
    judged = [text for agent, text in world.chats if agent == "judge"]
    assert judged and all(judged.count(text) == 2 for text in judged)  # one repair request, then the error
    assert not (tmp_path / "p.json").exists()


# --------------------------------------------------------------------------------------------
# The job kind "curate_pairs" with method=debate, and `manage.py curate_pairs --method debate`


def well_and_badly_rated_corpus():
    from webapp.corpus.models import Greeting, Label, Query

    for query, text, value in (("奶奶寿宴祝福", "愿奶奶寿比南山", "good"), ("八十大寿祝福语", "松柏长青，福寿绵长", "good"),
                               ("寿宴祝福语", "寿宴快乐快乐快乐", "bad")):
        greeting = Greeting.objects.create(query=Query.objects.create(text=query), text=text)
        Label.objects.create(greeting=greeting, value=value, source_kind="human", source_name="tester")


@pytest.mark.django_db
def test_the_job_kind_runs_the_debate_stops_and_resumes(tmp_path, settings):
    from tests.webapp.judges.test_judge_jobs import TinyJob, as_stored
    from webapp.judges import jobs

    settings.VAR_DIR = tmp_path / "var"
    settings.TRAINING_DATA_DIRS = [tmp_path]  # the prompt file below is the test's data folder
    well_and_badly_rated_corpus()
    prompts = tmp_path / "queries.txt"
    prompts.write_text("七十寿宴\n新年贺词\n", encoding="utf-8")
    world = DebateWorld()
    with ScriptedServer(world) as server:
        settings.JUDGE_LLM_BASE_URL, settings.JUDGE_LLM_MODEL = server.base_url, "stand-in"
        params = as_stored(jobs.CuratePairsParams, {
            "method": "debate", "prompts_file": str(prompts), "remote_url": server.base_url.removesuffix("/v1"),
            "remote_model": "m", "temperatures": "0.7,1.1", "candidates_per_agent": 2, "max_longer_share": 1.0,
            "retrieve_k": 2, "name": "debate-pairs"})
        stopped = jobs.run_curate_pairs(params, TinyJob(tmp_path / "job", stop_after=1))
        assert stopped["cancelled"] and not (settings.VAR_DIR / "curation" / "debate-pairs.json").exists()
        chats_before = len(world.chats)
        job = TinyJob(tmp_path / "job")
        result = jobs.run_curate_pairs(params, job)
    stats = result["stats"]
    assert result["judges"] == ["debate"] and result["endpoint"]["model"] == "stand-in"
    assert stats["method"] == "debate" and stats["prompts_resumed"] == 1 and stats["pairs"] == 2
    assert chats_before == 16 and len(world.chats) == 32  # the resumed job asked only for the second prompt
    assert stats["retrieval_examples"] == 2  # the badly rated greeting is not indexed
    assert all("寿宴快乐" not in examples for _, examples in world.generations)
    assert ("七十寿宴", "「愿奶奶寿比南山」；「松柏长青，福寿绵长」") in world.generations
    assert [e["step"] for e in job.events if e["event"] == "step"] == [1, 2]
    records = read_pair_file(result["pairs_file"])
    assert all(r["provenance"]["debate"]["chosen"]["final"] == 1 for r in records)


@pytest.mark.django_db
def test_the_command_names_the_missing_or_dead_endpoint_and_writes_nothing(tmp_path, settings):
    from django.core.management import CommandError, call_command

    settings.VAR_DIR = tmp_path / "var"
    settings.TRAINING_DATA_DIRS = [tmp_path]  # the prompt file below is the test's data folder
    prompts = tmp_path / "queries.txt"
    prompts.write_text("七十寿宴\n", encoding="utf-8")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ScriptedServer(DebateWorld()) as server:
        args = ["curate_pairs", "--method", "debate", "--prompts", str(prompts), "--name", "nothing",
                "--remote-url", server.base_url.removesuffix("/v1"), "--remote-model", "m"]
        settings.JUDGE_LLM_BASE_URL, settings.JUDGE_LLM_MODEL = "", ""
        with pytest.raises(CommandError, match="base_url: the debate agents need an LLM endpoint"):
            call_command(*args)
        settings.JUDGE_LLM_BASE_URL, settings.JUDGE_LLM_MODEL = f"http://127.0.0.1:{port}/v1", "m"
        settings.JUDGE_LLM_TIMEOUT = 2
        with pytest.raises(CommandError, match=rf"base_url: the positive agent's endpoint failed: .*127.0.0.1:{port}"):
            call_command(*args)
    assert not (settings.VAR_DIR / "curation" / "nothing.json").exists()
