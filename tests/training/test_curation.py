"""Multi-agent rejection sampling against real HTTP: the agents are OpenAICompatibleBackend clients of a
local server that streams fixed candidates per (query, temperature) over /v1/completions, and the judge
is the LLM judge asking the same server's /v1/chat/completions, which scores from a fixed table.
One more run uses the in-process engine on a random tiny model."""
import json
import socket

import pytest

from generation.backends import LocalEngineBackend, OpenAICompatibleBackend
from generation.engine.testing import random_model, toy_tokenizer
from tests.training.test_llm_judge import ScriptedServer, completion, greeting_of
from training.curation import CurationConfig, CurationError, GeneratorAgent, curate_pairs, read_pair_file
from training.curation.rejection_sampling import CANDIDATES_FILE, balance_length
from training.judges.data import load_pairs
from training.judges.length import LengthJudge
from training.judges.llm import LLMJudge, LLMJudgeConfig

# (query, temperature) -> candidates; SCORES: what the judge gives each text
CANDIDATES = {
    ("甲寿宴", 0.7): ["甲一福寿双全，松鹤长春", "甲二平平"],
    ("甲寿宴", 1.1): ["甲三尚可", "甲四寿比南山"],
    ("乙平淡", 0.7): ["乙一还行吧", "乙二也还行"],
    ("乙平淡", 1.1): ["乙三一般般", "乙四普通"],
    ("丙泄漏", 0.7): ["丙一好", "丙二坏"],
    ("丙泄漏", 1.1): ["丙三好", "丙四坏"],
}
SCORES = {"甲一福寿双全，松鹤长春": 0.9, "甲二平平": 0.45, "甲三尚可": 0.55, "甲四寿比南山": 0.75,
          "乙一还行吧": 0.6, "乙二也还行": 0.55, "乙三一般般": 0.45, "乙四普通": 0.4,
          "丙一好": 0.9, "丙二坏": 0.1, "丙三好": 0.9, "丙四坏": 0.1}


def length_bias_world(n_prompts=6):
    """Per prompt: a long good text, a short good one and a mid-length bad one, so the widest margin
    always has the longer chosen text; the last prompt has only a longer-chosen option."""
    candidates, scores = {}, {}
    for i in range(n_prompts):
        query = f"丁{i}号请求"
        long_good, short_good, bad = f"丁{i}长好祝福愿你万事顺遂岁岁安康", f"丁{i}短好", f"丁{i}中等的坏话"
        if i == n_prompts - 1:
            short_good = f"丁{i}又一条很长的好祝福愿你前程似锦"
        candidates[(query, 0.7)] = [long_good, bad]
        candidates[(query, 1.1)] = [short_good, f"丁{i}坏"]
        scores.update({long_good: 0.95, short_good: 0.85, bad: 0.1, f"丁{i}坏": 0.4})
    return candidates, scores


class World:
    """The server's behaviour: streamed candidates and judge scores."""

    def __init__(self, candidates=CANDIDATES, scores=SCORES):
        self.candidates, self.scores = candidates, scores
        self.asked_queries = []

    def __call__(self, body, n):
        if "messages" in body:  # the judge
            text = greeting_of(body)["greeting"]
            score = self.scores[text]
            answer = {"verdict": "Good" if score >= 0.5 else "Bad", "score": score, "reason": "table"}
            return 200, completion(json.dumps(answer, ensure_ascii=False))
        key = next(k for k in self.candidates if k[0] in body["prompt"] and k[1] == body["temperature"])
        self.asked_queries.append(key[0])
        texts = self.candidates[key][: body["n"]]
        lines = [f"data: {json.dumps({'id': 'c', 'choices': [{'index': i, 'text': t, 'finish_reason': 'stop'}]}, ensure_ascii=False)}\n\n"
                 for i, t in enumerate(texts)]
        return 200, "".join(lines) + "data: [DONE]\n\n"


def agents_for(server, n=2):
    backend = OpenAICompatibleBackend(server.base_url.removesuffix("/v1"), "stand-in", timeout_s=5)
    return [GeneratorAgent("remote@t0.7", backend, n=n, temperature=0.7),
            GeneratorAgent("remote@t1.1", backend, n=n, temperature=1.1)]


def judge_for(server):
    return LLMJudge(LLMJudgeConfig(base_url=server.base_url, model="stand-in", timeout=5, max_retries=0),
                    rules=["只有在各方面都好时才判为 Good。"])


def test_only_clear_margin_pairs_are_kept_and_written_with_provenance(tmp_path):
    world = World()
    with ScriptedServer(world) as server:
        result = curate_pairs(["甲寿宴", "乙平淡"], agents_for(server), {"llm": judge_for(server)},
                              CurationConfig(min_margin=0.3, max_longer_share=None, pairs_per_prompt=2),
                              output=tmp_path / "pairs.json", progress_bar=False)
    stats = result.stats
    assert stats["candidates_generated"] == 8 and stats["candidates_judged"] == 8
    assert stats["prompts_without_margin_pair"] == 1  # 乙: every gap is below 0.3
    kept = {(p.chosen["text"], p.rejected["text"]) for p in result.pairs}
    # (0.9 vs 0.45) and then (0.75 vs ...) would reuse 甲二; 甲三 0.55 vs 甲二 0.45 has no margin
    assert kept == {("甲一福寿双全，松鹤长春", "甲二平平")}
    assert all(p.margin >= 0.3 and p.chosen["score"] >= 0.5 > p.rejected["score"] for p in result.pairs)
    records = read_pair_file(result.output)
    assert records[0]["provenance"]["chosen_agent"] == "remote@t0.7"
    assert records[0]["provenance"]["margin"] == pytest.approx(0.45)
    assert records[0]["provenance"]["judge_scores"]["chosen"] == {"llm": 0.9}
    # the reward-model trainer's reader takes the file as it is
    assert [(p.query, p.chosen, p.rejected) for p in load_pairs(result.output)] == [
        ("甲寿宴", "甲一福寿双全，松鹤长春", "甲二平平")]
    meta = json.loads((tmp_path / "pairs.meta.json").read_text())
    assert meta["stats"]["pairs"] == 1 and [a["name"] for a in meta["agents"]] == ["remote@t0.7", "remote@t1.1"]


def test_evaluation_queries_are_never_generated_for(tmp_path):
    world = World()
    with ScriptedServer(world) as server:
        result = curate_pairs(["甲寿宴", " 丙泄漏 ", "甲寿宴"], agents_for(server), {"llm": judge_for(server)},
                              exclude_queries=["丙泄漏"], progress_bar=False)
    assert "丙泄漏" not in world.asked_queries and set(world.asked_queries) == {"甲寿宴"}
    assert result.stats["prompts_excluded_leakage"] == 1 and result.stats["prompts_duplicate"] == 1
    assert all(p.query != "丙泄漏" for p in result.pairs)


def test_length_guard_balances_who_is_longer():
    candidates, scores = length_bias_world()
    queries = sorted({q for q, _ in candidates})
    runs = {}
    for share in (None, 0.5):
        with ScriptedServer(World(candidates, scores)) as server:
            runs[share] = curate_pairs(queries, agents_for(server, n=2), {"llm": judge_for(server)},
                                       CurationConfig(min_margin=0.3, max_longer_share=share), progress_bar=False)
    unguarded, guarded = runs[None], runs[0.5]
    assert unguarded.stats["chosen_longer_share"] == 1.0  # the widest margin always has the longer text
    assert guarded.stats["chosen_longer_share"] <= 0.5
    assert sum(not p.chosen_longer for p in guarded.pairs) >= 3
    assert all(p.margin >= 0.3 for p in guarded.pairs)
    # the final guard drops the lowest-margin longer pairs when no shorter option was left
    pairs = list(unguarded.pairs)
    balanced, dropped = balance_length(pairs, 0.5)
    assert balanced == [] and dropped == len(pairs)  # nothing but longer-chosen pairs: all go


def test_a_stopped_run_writes_no_pairs_and_resumes_where_it_stopped(tmp_path):
    world = World()
    queries = ["甲寿宴", "乙平淡"]
    with ScriptedServer(world) as server:
        first = curate_pairs(queries, agents_for(server), {"llm": judge_for(server)}, workdir=tmp_path / "work",
                             output=tmp_path / "pairs.json", progress_bar=False,
                             on_progress=lambda e: e.get("event") != "step")
        assert not first.completed and not (tmp_path / "pairs.json").exists()
        assert len((tmp_path / "work" / CANDIDATES_FILE).read_text().splitlines()) == 1
        asked_before = list(world.asked_queries)
        second = curate_pairs(queries, agents_for(server), {"llm": judge_for(server)}, workdir=tmp_path / "work",
                              output=tmp_path / "pairs.json", progress_bar=False)
    assert asked_before == ["甲寿宴", "甲寿宴"]
    assert world.asked_queries[2:] == ["乙平淡", "乙平淡"]  # the finished prompt was not generated again
    assert second.completed and second.stats["prompts_resumed"] == 1 and (tmp_path / "pairs.json").exists()


def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path):
    with ScriptedServer(World()) as server:
        agents = agents_for(server)
        with pytest.raises(CurationError, match="prompts: no prompts to curate"):
            curate_pairs(["", "  "], agents, {"llm": judge_for(server)}, progress_bar=False)
        with pytest.raises(CurationError, match=r"no prompts to curate \(1 excluded"):
            curate_pairs(["丙泄漏"], agents, {"llm": judge_for(server)}, exclude_queries=["丙泄漏"], progress_bar=False)
        with pytest.raises(CurationError, match="min_margin"):
            CurationConfig(min_margin=0)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        dead_judge = LLMJudge(LLMJudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=0),
                              rules=["规则"])
        with pytest.raises(CurationError, match=rf"judge llm failed: .*127.0.0.1:{port}.*connection failed"):
            curate_pairs(["甲寿宴"], agents, {"llm": dead_judge}, output=tmp_path / "p.json", progress_bar=False)
    dead_agent = GeneratorAgent("gone", OpenAICompatibleBackend(f"http://127.0.0.1:{port}", "m", timeout_s=2))
    with pytest.raises(CurationError, match="agent gone could not write"):
        curate_pairs(["甲寿宴"], [dead_agent], {"length": LengthJudge(8)}, output=tmp_path / "p.json",
                     progress_bar=False)
    assert not (tmp_path / "p.json").exists()


def test_engine_agents_on_a_tiny_model(tmp_path, one_thread):
    tokenizer = toy_tokenizer()
    backend = LocalEngineBackend.from_model(random_model(tokenizer, "tiny", max_position_embeddings=256), tokenizer,
                                            max_slots=4)
    agents = [GeneratorAgent("tiny@t0.8", backend, n=2, temperature=0.8, max_new_tokens=24),
              GeneratorAgent("tiny@t1.2/古风", backend, n=2, temperature=1.2, max_new_tokens=24, persona="古风")]
    result = curate_pairs(["新年快乐", "生日快乐"], agents, {"length": LengthJudge(6)},
                          CurationConfig(min_margin=0.05, min_chars=1), output=tmp_path / "pairs.json",
                          progress_bar=False)
    stats = result.stats
    assert stats["candidates_generated"] == 8
    assert stats["candidates_judged"] + stats["candidates_rejected_length_limits"] + stats["candidates_rejected_duplicate"] == 8
    assert result.output.exists() and len(read_pair_file(result.output)) == stats["pairs"]
