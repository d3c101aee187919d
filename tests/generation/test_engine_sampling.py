"""Serving engine: seeds, filters, repetition penalty, stop strings, streaming, JSON-constrained output."""
import json

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from generation.engine import Engine, SamplingParams, SchemaError
from generation.engine.json_constraint import AnyObjectMachine, JsonMachine
from generation.engine.sampler import filter_top_k_top_p
from generation.engine.testing import random_model, toy_tokenizer

JUDGE = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["Good", "Bad"]},
        "score": {"type": "number"},
        "reason": {"type": "string", "maxLength": 40},
    },
    "required": ["verdict", "score", "reason"],
}


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return random_model(tokenizer, seed=2)


@pytest.fixture()
def engine(model, tokenizer):
    return Engine(model, tokenizer, max_slots=8)


PROMPT = [1, 40, 41, 42, 43, 44]


def texts(output):
    return [c.token_ids for c in output.candidates]


def test_same_seed_same_output_whatever_else_is_batched(engine, model):
    params = SamplingParams(n=2, max_tokens=20, temperature=1.0, top_p=0.9, top_k=50, seed=123, ignore_eos=True)
    alone = engine.generate([PROMPT], params)[0]
    noise = SamplingParams(n=3, max_tokens=25, temperature=1.3, seed=7, ignore_eos=True)
    mixed = engine.generate([[1, 9, 9, 9, 9, 9, 9, 9, 9], PROMPT, [2, 3]], [noise, params, noise])[1]
    assert texts(alone) == texts(mixed)
    assert texts(alone)[0] != texts(alone)[1]  # candidates draw different streams
    other = engine.generate([PROMPT], SamplingParams(n=2, max_tokens=20, temperature=1.0, seed=124, ignore_eos=True))[0]
    assert texts(other) != texts(alone)


def test_top_k_one_is_greedy(engine):
    greedy = engine.generate([PROMPT], SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))[0]
    top1 = engine.generate([PROMPT], SamplingParams(max_tokens=12, temperature=2.0, top_k=1, seed=5, ignore_eos=True))[0]
    assert texts(top1) == texts(greedy)


@pytest.mark.parametrize("top_k,top_p", [(0, 0.9), (5, 1.0), (20, 0.5), (0, 0.3)])
def test_filters_match_transformers_warpers(top_k, top_p):
    logits = torch.randn(3, 100, generator=torch.Generator().manual_seed(top_k))
    expected = logits.clone()
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1:
        expected = TopPLogitsWarper(top_p)(None, expected)
    got = filter_top_k_top_p(logits, torch.tensor([top_k] * 3), torch.tensor([top_p] * 3))
    assert torch.equal(torch.isinf(got), torch.isinf(expected))
    assert torch.equal(got[~torch.isinf(got)], expected[~torch.isinf(expected)])


def test_repetition_penalty_matches_transformers(engine, model):
    ids = torch.tensor([PROMPT])
    ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                         repetition_penalty=1.5, eos_token_id=None, pad_token_id=0)[0, len(PROMPT):].tolist()
    out = engine.generate([PROMPT], SamplingParams(max_tokens=16, temperature=0, repetition_penalty=1.5, ignore_eos=True))[0]
    assert out.candidates[0].token_ids == ref


def test_stop_string_cuts_the_text_and_stream_adds_up(engine, tokenizer):
    full = engine.generate([PROMPT], SamplingParams(max_tokens=30, temperature=0, ignore_eos=True))[0].candidates[0].text
    assert len(full) > 12
    stop = full[8:11]
    cut = full[: full.index(stop)]
    deltas, finals = [], []
    for event in engine.stream([PROMPT], SamplingParams(n=2, max_tokens=30, temperature=0, stop=[stop], ignore_eos=True)):
        deltas.append((event.candidate_index, event.text_delta))
        if event.finished:
            finals.append((event.candidate_index, event.finish_reason))
    for i in (0, 1):
        assert "".join(d for c, d in deltas if c == i) == cut
    assert sorted(finals) == [(0, "stop"), (1, "stop")]
    assert engine.cache.free_slots == 8


def test_eos_stops_a_candidate(engine, model, tokenizer):
    # make the end token the greedy choice after the first generated token: bias the lm_head row
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        saved = model.lm_head.weight[eos].clone()
        model.lm_head.weight[eos] = model.lm_head.weight[eos] * 0 + 0.5
        try:
            out = engine.generate([PROMPT], SamplingParams(max_tokens=20, temperature=0))[0].candidates[0]
        finally:
            model.lm_head.weight[eos] = saved
    assert out.finish_reason == "stop" and out.token_ids[-1] == eos and len(out.token_ids) < 20


@pytest.mark.parametrize("max_tokens", [39, 64])  # 39: the shortest document
def test_json_output_always_parses(engine, max_tokens):
    params = SamplingParams(n=6, max_tokens=max_tokens, temperature=1.2, seed=max_tokens, json_schema=JUDGE)
    out = engine.generate([PROMPT], params)[0]
    for c in out.candidates:
        doc = json.loads(c.text)
        assert list(doc) == ["verdict", "score", "reason"]
        assert doc["verdict"] in ("Good", "Bad")
        assert isinstance(doc["score"], (int, float)) and not isinstance(doc["score"], bool)
        assert isinstance(doc["reason"], str) and len(doc["reason"]) <= 40
        assert len(c.token_ids) <= max_tokens


def test_json_optional_keys_booleans_and_integers(engine):
    schema = {
        "type": "object",
        "properties": {"a": {"type": "boolean"}, "b": {"type": "integer"}, "c": {"type": "string", "maxLength": 5}},
        "required": ["b"],
    }
    out = engine.generate([PROMPT], SamplingParams(n=8, max_tokens=30, temperature=1.5, seed=3, json_schema=schema))[0]
    for c in out.candidates:
        doc = json.loads(c.text)
        assert isinstance(doc["b"], int) and set(doc) <= {"a", "b", "c"}
        assert isinstance(doc.get("a", True), bool)


def test_json_machine_accepts_exactly_valid_prefixes():
    m = JsonMachine(JUDGE)
    good = '{"verdict":"Bad","score":-0.5e3,"reason":"太短了"}'
    assert m.is_done(m.advance_text(m.initial, good))
    assert json.loads(good)
    for bad in ['{"score":1', '{"verdict":"Ok"', '{"verdict":"Good","score":01', '{"verdict":"Good","score":1,"reason":"a\\n"}',
                '{"verdict":"Good","score":1}', '{"verdict":"Good","score":1,"reason":"x"}}']:
        assert m.advance_text(m.initial, bad) is None or not m.is_done(m.advance_text(m.initial, bad)), bad
    # the fewest characters to close agrees with an actual shortest completion
    state = m.advance_text(m.initial, '{"verdict":"Go')
    assert m.min_to_finish(state) == len('od","score":0,"reason":""}')


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array"},
        {"type": "object", "properties": {}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "null"}}},
        {"type": "object", "properties": {"a": {"enum": []}}},
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": -1}}},
        "not a schema",
    ],
)
def test_malformed_schema_is_refused(engine, schema):
    with pytest.raises(SchemaError):
        engine.submit(PROMPT, SamplingParams(json_schema=schema))
    assert not engine.has_unfinished() and engine.cache.free_slots == 8


def test_json_schema_needs_enough_tokens(engine):
    with pytest.raises(SchemaError.__mro__[1]):  # InvalidRequestError
        engine.submit(PROMPT, SamplingParams(max_tokens=38, json_schema=JUDGE))


@pytest.mark.parametrize("max_tokens", [2, 12, 60])  # 2: the shortest object, "{}"
def test_any_json_object_always_parses(engine, max_tokens):
    params = SamplingParams(n=6, max_tokens=max_tokens, temperature=1.5, seed=max_tokens, json_schema={"type": "object"})
    out = engine.generate([PROMPT], params)[0]
    for c in out.candidates:
        assert isinstance(json.loads(c.text), dict), c.text
        assert len(c.token_ids) <= max_tokens and c.finish_reason == "stop"


def test_any_object_machine_accepts_exactly_valid_prefixes():
    m = AnyObjectMachine()
    for good in ['{}', '{"a":[1,-2.5e3,{"b":null}],"":true,"c":"祝福"}', '{"x":[]}', '{"x":[[false]]}']:
        assert m.is_done(m.advance_text(m.initial, good)) and json.loads(good) is not None
    for bad in ['[1]', '{"a"}', '{"a":01}', '{"a":[1,]}', '{"a":tru}', '{,}', '{"a":1}}', '{"a":"\\n"}']:
        state = m.advance_text(m.initial, bad)
        assert state is None or not m.is_done(state), bad
    state = m.advance_text(m.initial, '{"a":[{"b":tr')
    assert m.min_to_finish(state) == len('ue}]}')
    assert m.advance_text(m.initial, "{\"a\":" + "[" * 7) is not None and m.advance_text(m.initial, "{\"a\":" + "[" * 8) is None


def longest_run(tokens):
    best = run = 1
    for a, b in zip(tokens, tokens[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def repeated_ngrams(tokens, n):
    seen, repeats = set(), 0
    for i in range(len(tokens) - n + 1):
        gram = tuple(tokens[i:i + n])
        repeats += gram in seen
        seen.add(gram)
    return repeats


def test_banned_repeats_names_the_token_that_would_stutter():
    from generation.engine.sampler import banned_repeats

    assert banned_repeats([5, 7, 7], max_run=2, ngram=0) == {7}
    assert banned_repeats([7, 5, 7], max_run=2, ngram=0) == set()
    # 1 2 3 4 ... 1 2 3: a 4 would repeat the 4-gram 1 2 3 4
    assert banned_repeats([1, 2, 3, 4, 9, 1, 2, 3], max_run=0, ngram=4) == {4}
    assert banned_repeats([1, 2, 3, 4, 9, 1, 2], max_run=0, ngram=4) == set()
    assert banned_repeats([3, 3, 3], max_run=0, ngram=0) == set()


def test_greedy_decoding_of_a_stuttering_model_obeys_the_run_and_ngram_limits(engine):
    plain = engine.generate([PROMPT], SamplingParams(max_tokens=40, temperature=0, ignore_eos=True))[0]
    tokens = texts(plain)[0]
    # a random model decoded greedily loops; the limits below must then change what it writes
    assert longest_run(tokens) > 2 or repeated_ngrams(tokens, 4) > 0
    limited = engine.generate([PROMPT], SamplingParams(max_tokens=40, temperature=0, ignore_eos=True,
                                                       max_token_run=2, no_repeat_ngram_size=4))[0]
    tokens = texts(limited)[0]
    assert len(tokens) == 40
    assert longest_run(tokens) <= 2 and repeated_ngrams(tokens, 4) == 0


@pytest.mark.parametrize("field", ["max_token_run", "no_repeat_ngram_size"])
def test_repeat_limits_refuse_bad_values_naming_the_field(engine, field):
    from generation.engine import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=field):
        engine.submit(PROMPT, SamplingParams(**{field: -1}))
