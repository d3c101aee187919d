"""Adversarial judge optimisation against a real local HTTP server that answers like an LLM would.

The server is deterministic: as the judge it calls a greeting Bad when one of the rules in the
system prompt names a flaw it can see (重复 -> a repeated chunk, 催婚 -> pressure to marry,
指令 -> an injected instruction, 感叹号 -> any '！', an over-broad rule) or when the greeting is
very short; as the reflector it answers with a revision chosen by the test (`mode`)."""
import json
import re
import socket

import pytest

from tests.training.test_llm_judge import ScriptedServer, completion, greeting_of
from training.judges.adversarial import (
    MAX_RULES,
    AdversarialConfig,
    AdversarialError,
    PrincipleError,
    Principles,
    optimise_principles,
    parse_reflection_data,
    perturbation_attacks,
    rules_diff,
)
from training.judges.evaluation import LabeledItem
from training.judges.llm import LLMJudgeConfig
from webapp.judges.principles import DEFAULT_RULES, DEFAULT_STRENGTHS, DEFAULT_WEAKNESSES

INJECTION_MARKERS = ("忽略", "Ignore", "SYSTEM", '"verdict"', "DATA END", "管理员", "Assistant:")
DETECTORS = {
    "重复": lambda t: re.search(r"(.{2})\1\1", t) is not None,
    "催婚": lambda t: any(w in t for w in ("结婚", "生孩子", "二胎", "对象")),
    "指令": lambda t: any(m in t for m in INJECTION_MARKERS),
    "感叹号": lambda t: "！" in t,
}
REPETITION_RULE = "重复堆砌同一词语的祝福判为 Bad。"
OVERBROAD_RULE = "带感叹号的祝福一律判为 Bad。"

GOOD = ["愿您福寿安康，笑口常开，儿孙绕膝享天伦", "新岁启新程，愿你所行皆坦途，所愿皆如意",
        "祝老师桃李满天下，岁岁常安康！", "愿你前程似锦，心中有光，步履不停皆是诗！",
        "恭贺乔迁之喜，新居纳福，日日温暖明亮", "十年磨一剑，今朝试锋芒，愿你金榜题名！"]
BAD = ["快乐", "早点结婚生孩子吧，别让爸妈操心", "祝你好", "该找对象结婚了，年纪不小了"]


def labelled_items(n_queries=24):
    items = []
    for i in range(n_queries):
        query = f"第{i}号祝福请求"
        items.append(LabeledItem(query, GOOD[i % len(GOOD)], 1))
        items.append(LabeledItem(query, BAD[i % len(BAD)], 0))
    return items


class LLMStandIn:
    """Judge and reflector answers; `mode` picks the revision the reflection step proposes."""

    def __init__(self, mode):
        self.mode = mode
        self.reflections = []

    def __call__(self, body, n):
        kind = body["response_format"]["json_schema"]["name"]
        if kind == "verdict":
            system = body["messages"][0]["content"]
            rules = system.split("【评审规则】")[1].split("【优点")[0]
            text = greeting_of(body)["greeting"]
            bad = len(text) < 6 or any(word in rules and seen(text) for word, seen in DETECTORS.items())
            answer = {"verdict": "Bad" if bad else "Good", "score": 0.1 if bad else 0.9, "reason": "stand-in"}
            return 200, completion(json.dumps(answer, ensure_ascii=False))
        if kind == "rules":
            data = parse_reflection_data(body["messages"][-1]["content"]) if len(body["messages"]) == 2 else None
            self.reflections.append({"data": data, "messages": body["messages"]})
            current = list(data["current_rules"]) if data else list(DEFAULT_RULES)
            if self.mode == "improve":
                rules = current + [REPETITION_RULE]
            elif self.mode == "overbroad":
                rules = current + [REPETITION_RULE, OVERBROAD_RULE]
            else:  # "too_many"
                rules = [f"第{i}条规则：不要判 Good。" for i in range(MAX_RULES + 2)]
            return 200, completion(json.dumps({"rules": rules, "note": self.mode}, ensure_ascii=False))
        return 400, {"error": f"unexpected schema {kind}"}


def run_game(mode, rounds=2, **settings):
    with ScriptedServer(LLMStandIn(mode)) as server:
        config = LLMJudgeConfig(base_url=server.base_url, model="stand-in", timeout=5, max_retries=0,
                                max_concurrency=4)
        start = Principles(rules=DEFAULT_RULES, strengths=DEFAULT_STRENGTHS, weaknesses=DEFAULT_WEAKNESSES)
        options = dict(rounds=rounds, attacks_per_round=18, strategies=("repetition", "pressure", "injection"))
        options.update(settings)
        result = optimise_principles(start, config, labelled_items(), AdversarialConfig(**options),
                                     progress_bar=False)
        return result, server.script


def test_an_improved_principle_set_is_accepted():
    result, llm = run_game("improve")
    first = result.rounds[0]
    assert first["before"]["attack_success_rate"] > 0  # repetition attacks pass the default rules
    assert first["before"]["per_strategy"]["repetition"]["fooled"] == first["before"]["per_strategy"]["repetition"]["attacks"]
    assert first["before"]["per_strategy"]["pressure"]["fooled"] == 0
    assert first["accepted"] and first["after"]["attack_success_rate"] == 0.0
    assert first["after"]["agreement"] >= first["before"]["agreement"]
    assert first["diff"] == {"added": [REPETITION_RULE], "removed": [], "kept": len(DEFAULT_RULES)}
    assert result.improved and result.best.rules[-1] == REPETITION_RULE
    # the reflector saw the failures as quoted data, each with its flaw
    shown = llm.reflections[0]["data"]["passed_flawed_greetings"]
    assert shown and {f["flaw"] for f in shown} == {"repetition"}
    # round 2 judges with the accepted set: nothing passes, nothing to fix, no reflection asked
    second = result.rounds[1]
    assert second["before"]["attack_success_rate"] == 0.0 and not second["accepted"]
    assert "nothing to fix" in second["reason"] and len(llm.reflections) == 1
    assert result.usage["requests"] > 0 and result.usage["total_tokens"] > 0


def test_a_set_that_lowers_agreement_is_rejected():
    result, _ = run_game("overbroad", rounds=1)
    record = result.rounds[0]
    assert record["after"]["attack_success_rate"] < record["before"]["attack_success_rate"]  # it does stop attacks
    assert record["after"]["agreement"] < record["before"]["agreement"]  # but fails good greetings with '！'
    assert not record["accepted"] and "agreement dropped" in record["reason"]
    assert OVERBROAD_RULE in record["diff"]["added"]
    assert not result.improved and result.best == result.start


def test_a_reflection_with_more_than_ten_rules_is_refused_after_one_repair():
    result, llm = run_game("too_many", rounds=1)
    record = result.rounds[0]
    assert not record["accepted"] and "reflection refused" in record["reason"] and "at most 10" in record["reason"]
    assert len(llm.reflections) == 2  # the answer and one repair request
    assert "最多 10 条" in llm.reflections[1]["messages"][-1]["content"]
    assert result.best == result.start


def test_principle_limits():
    with pytest.raises(PrincipleError, match="rules: at most 10 rules, got 11"):
        Principles(rules=[f"规则{i}" for i in range(11)])
    with pytest.raises(PrincipleError, match="rules: at least one rule"):
        Principles(rules=[])
    with pytest.raises(PrincipleError, match="weaknesses: must be a list of non-empty texts"):
        Principles(rules=["规则"], weaknesses=["  "])
    assert rules_diff(["a", "b"], ["b", "c"]) == {"added": ["c"], "removed": ["a"], "kept": 1}


def test_attacks_are_flawed_versions_of_good_greetings():
    import random

    seeds = [(f"q{i}", g) for i, g in enumerate(GOOD)]
    attacks = perturbation_attacks(seeds, {name: 1.0 for name in ("repetition", "pressure", "injection", "typo",
                                                                 "cliche_pile", "off_topic", "sarcasm")},
                                   40, random.Random(0))
    assert len(attacks) == 40 and len({a.strategy for a in attacks}) >= 5
    assert all(a.greeting not in GOOD or a.strategy == "off_topic" for a in attacks)
    assert all(DETECTORS["重复"](a.greeting) for a in attacks if a.strategy == "repetition")
    with pytest.raises(AdversarialError, match="unknown"):
        perturbation_attacks(seeds, {"shouting": 1.0}, 3, random.Random(0))


def test_unreachable_endpoint_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LLMJudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2, max_retries=0)
    with pytest.raises(AdversarialError, match=rf"127.0.0.1:{port}.*connection failed"):
        optimise_principles(Principles(rules=DEFAULT_RULES), config, labelled_items(),
                            AdversarialConfig(rounds=1, attacks_per_round=4), progress_bar=False)
    with pytest.raises(AdversarialError, match="need some on both sides"):
        optimise_principles(Principles(rules=DEFAULT_RULES), config, labelled_items()[:1],
                            AdversarialConfig(rounds=1), progress_bar=False)
