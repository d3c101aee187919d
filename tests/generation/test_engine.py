"""Serving engine: greedy parity with transformers, continuous batching, absorbed MLA cache, errors."""
import pytest
import torch

from generation.engine import Engine, InvalidRequestError, PromptTooLongError, SamplingParams
from generation.engine.outputs import output_of
from generation.engine.cache import bytes_per_token
from generation.engine.testing import random_model, toy_tokenizer

GREEDY = dict(temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def tokenizer():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return random_model(tokenizer, seed=0)


def prompts_of_lengths(lengths, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, vocab, (n,), generator=g).tolist() for n in lengths]


def reference(model, prompt, max_new_tokens, **kwargs):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
            do_sample=False, eos_token_id=None, pad_token_id=0, **kwargs,
        )
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the small preset's shapes
        dict(num_layers=3, kv_lora_rank=128, qk_rope_head_dim=32, head_dim=32, qk_head_dim=64, num_attention_heads=2,
             num_key_value_heads=2, moe_topk=2, routed_scaling_factor=1.0),
    ],
)
def test_greedy_matches_transformers_generate(tokenizer, overrides):
    model = random_model(tokenizer, seed=1, **overrides)
    prompts = prompts_of_lengths([3, 17, 8, 40, 1], model.config.vocab_size)
    expected = [reference(model, p, 24) for p in prompts]
    engine = Engine(model, tokenizer, max_slots=8)
    outputs = engine.generate(prompts, SamplingParams(max_tokens=24, **GREEDY))
    assert [o.candidates[0].token_ids for o in outputs] == expected


def test_requests_join_and_leave_the_running_batch(model, tokenizer):
    prompts = prompts_of_lengths([5, 12, 7, 20], model.config.vocab_size, seed=3)
    lengths = [16, 6, 12, 9]
    expected = [reference(model, p, n) for p, n in zip(prompts, lengths)]
    engine = Engine(model, tokenizer, max_slots=4)
    # _submit returns the Request, whose tokens are compared with transformers' at the end
    first = [engine._submit(p, SamplingParams(max_tokens=n, **GREEDY), None, None)
             for p, n in zip(prompts[:2], lengths[:2])]
    done = {}
    for _ in range(4):
        engine.step()
    assert engine.num_running == 2
    later = [engine._submit(p, SamplingParams(max_tokens=n, **GREEDY), None, None)
             for p, n in zip(prompts[2:], lengths[2:])]
    running_sizes = []
    while engine.has_unfinished():
        running_sizes.append(engine.num_running)
        for event in engine.step():
            if event.finished:
                done[event.request_id] = event.finish_reason
    # short requests left while others kept decoding
    assert len(set(running_sizes)) > 1
    assert set(done.values()) == {"length"}
    assert engine.cache.free_slots == 4
    assert [output_of(r).candidates[0].token_ids for r in first + later] == expected


def test_continuous_batching_outputs_match_reference(model, tokenizer):
    prompts = prompts_of_lengths([5, 12, 7, 20, 3], model.config.vocab_size, seed=4)
    lengths = [16, 6, 12, 9, 5]
    expected = [reference(model, p, n) for p, n in zip(prompts, lengths)]
    engine = Engine(model, tokenizer, max_slots=2)  # fewer slots than requests: a queue forms
    requests = [engine._submit(p, SamplingParams(max_tokens=n, **GREEDY), None, None) for p, n in zip(prompts, lengths)]
    while engine.has_unfinished():
        engine.step()
        assert engine.num_running <= 2
    assert [r.candidates[0].tokens for r in requests] == expected


def test_decode_never_reexpands_the_cache(model, tokenizer):
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for n, m in model.named_modules() if n.endswith("kv_b_proj")]
    try:
        engine = Engine(model, tokenizer, max_slots=2)
        out = engine.generate([[5, 6, 7]], SamplingParams(max_tokens=5, **GREEDY))
    finally:
        for h in hooks:
            h.remove()
    assert len(out[0].candidates[0].token_ids) == 5
    assert calls == []


def test_cache_holds_only_compressed_kv_and_rope_key(model, tokenizer):
    config = model.config
    engine = Engine(model, tokenizer, max_slots=3, max_len=100)
    per_token = 2 * config.num_layers * (config.kv_lora_rank + config.qk_rope_head_dim) * 4
    assert engine.cache.bytes_per_token == per_token == bytes_per_token(config, torch.float32)
    assert engine.cache.nbytes == per_token * 3 * 100


def test_memory_budget_sets_the_slot_count(model, tokenizer):
    per_seq = bytes_per_token(model.config, torch.float32) * 64
    engine = Engine(model, tokenizer, max_slots=32, max_len=64, memory_budget_bytes=per_seq * 3 + per_seq // 2)
    assert engine.cache.num_slots == 3
    with pytest.raises(ValueError):
        Engine(model, tokenizer, max_len=64, memory_budget_bytes=per_seq // 2)


def test_n_candidates_share_one_prefill(model, tokenizer):
    prompt = prompts_of_lengths([30], model.config.vocab_size, seed=5)[0]
    seen = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(args[0].numel()))
    try:
        engine = Engine(model, tokenizer, max_slots=4)
        out = engine.generate([prompt], SamplingParams(n=3, max_tokens=6, **GREEDY))[0]
    finally:
        hook.remove()
    assert seen[0] == len(prompt)  # the prompt went through the model once, not three times
    assert seen[1:] == [3] * 5  # then one token per candidate per step
    expected = reference(model, prompt, 6)
    assert [c.token_ids for c in out.candidates] == [expected] * 3


def test_invalid_requests_raise_and_leave_the_engine_serving(model, tokenizer):
    engine = Engine(model, tokenizer, max_slots=4, max_len=50, max_n=4)
    running = engine.submit([5, 6, 7], SamplingParams(max_tokens=10, **GREEDY))
    engine.step()
    bad = [
        ([1] * 50, SamplingParams(max_tokens=1)),  # prompt fills the context
        ([1] * 45, SamplingParams(max_tokens=10)),  # prompt + max_tokens too long
        ([1, 2], SamplingParams(n=0)),
        ([1, 2], SamplingParams(n=5)),
        ([1, 2], SamplingParams(max_tokens=0)),
        ([1, 2], SamplingParams(temperature=-1)),
        ([1, 2], SamplingParams(top_p=0)),
        ([], SamplingParams()),
        ([10**6], SamplingParams()),
    ]
    for prompt, params in bad:
        with pytest.raises(InvalidRequestError):
            engine.submit(prompt, params)
    with pytest.raises(PromptTooLongError, match="50"):
        engine.submit([1] * 50)
    assert engine.num_waiting == 0 and engine.cache.free_slots == 3
    while engine.has_unfinished():
        engine.step()
    assert engine.cache.free_slots == 4
    assert running not in engine._active


def test_cancel_frees_slots_and_spares_the_others(model, tokenizer):
    prompts = prompts_of_lengths([6, 9], model.config.vocab_size, seed=6)
    expected = reference(model, prompts[1], 12)
    engine = Engine(model, tokenizer, max_slots=5)
    doomed = engine.submit(prompts[0], SamplingParams(n=3, max_tokens=40, temperature=1.0, seed=0))
    kept = engine._submit(prompts[1], SamplingParams(max_tokens=12, **GREEDY), None, None)
    waiting = engine.submit(prompts[0], SamplingParams(n=2, max_tokens=40))  # no room yet: waits
    for _ in range(3):
        engine.step()
    assert engine.num_waiting == 1 and engine.cache.free_slots == 1
    assert engine.cancel(doomed) and engine.cancel(waiting)
    assert engine.cache.free_slots == 4 and engine.num_waiting == 0
    events = engine.step()
    cancelled = [e for e in events if e.request_id == doomed]
    assert {(e.candidate_index, e.finished, e.finish_reason) for e in cancelled} == {(i, True, "cancelled") for i in range(3)}
    while engine.has_unfinished():
        engine.step()
    assert kept.candidates[0].tokens == expected
    assert engine.cache.free_slots == 5
    assert not engine.cancel(doomed)  # already gone


def test_deadline_finishes_the_request(model, tokenizer):
    engine = Engine(model, tokenizer, max_slots=2)
    rid = engine.submit([5, 6], SamplingParams(max_tokens=30, timeout_s=0))
    events = engine.step()
    assert [(e.request_id, e.finished, e.finish_reason) for e in events] == [(rid, True, "deadline")]
    assert engine.cache.free_slots == 2 and not engine.has_unfinished()


def test_failing_stream_consumer_only_fails_its_request(model, tokenizer):
    prompts = prompts_of_lengths([6, 9], model.config.vocab_size, seed=7)
    expected = reference(model, prompts[1], 10)

    def broken(event):
        raise RuntimeError("consumer went away")

    engine = Engine(model, tokenizer, max_slots=3)
    bad = engine._submit(prompts[0], SamplingParams(n=2, max_tokens=30, temperature=0), None, broken)
    good = engine._submit(prompts[1], SamplingParams(max_tokens=10, **GREEDY), None, None)
    while engine.has_unfinished():
        engine.step()
    assert {c.finish_reason for c in bad.candidates} == {"error"} and "consumer went away" in bad.error
    assert good.candidates[0].tokens == expected
    assert engine.cache.free_slots == 3


def test_failed_forward_fails_its_batch_not_the_engine(model, tokenizer, monkeypatch):
    engine = Engine(model, tokenizer, max_slots=2)
    first = engine._submit([5, 6, 7], SamplingParams(max_tokens=5, **GREEDY), None, None)
    real = engine.runner.forward
    monkeypatch.setattr(engine.runner, "forward", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    engine.step()
    assert first.candidates[0].finish_reason == "error" and "boom" in first.error
    assert engine.cache.free_slots == 2
    monkeypatch.setattr(engine.runner, "forward", real)
    out = engine.generate([[5, 6, 7]], SamplingParams(max_tokens=5, **GREEDY))
    assert out[0].candidates[0].token_ids == reference(model, [5, 6, 7], 5)


def test_generate_is_all_or_nothing(model, tokenizer):
    engine = Engine(model, tokenizer, max_slots=4, max_len=40)
    with pytest.raises(PromptTooLongError):
        engine.generate([[5, 6], [1] * 45], SamplingParams(max_tokens=4))
    assert not engine.has_unfinished() and engine.cache.free_slots == 4 and engine.step() == []


def test_stream_close_cancels_and_frees(model, tokenizer):
    engine = Engine(model, tokenizer, max_slots=4)
    stream = engine.stream([[5, 6, 7], [8, 9]], SamplingParams(n=2, max_tokens=30, temperature=1.0, seed=1))
    first = next(stream)
    assert first.request_id.startswith("req-")
    stream.close()
    assert not engine.has_unfinished() and engine.cache.free_slots == 4


def test_chunked_prefill_gives_the_same_tokens(model, tokenizer):
    prompts = prompts_of_lengths([70, 9, 33], model.config.vocab_size, seed=8)
    params = SamplingParams(n=2, max_tokens=10, **GREEDY)
    whole = Engine(model, tokenizer, max_slots=6).generate(prompts, params)
    chunked_engine = Engine(model, tokenizer, max_slots=6, max_prefill_tokens=16)
    chunked = chunked_engine.generate(prompts, params)
    assert [[c.token_ids for c in o.candidates] for o in chunked] == [[c.token_ids for c in o.candidates] for o in whole]
    assert whole[0].candidates[0].token_ids == reference(model, prompts[0], 10)
    assert chunked_engine.cache.free_slots == 6 and chunked_engine.num_prefilling == 0


def test_running_requests_keep_streaming_while_a_long_prompt_prefills(model, tokenizer):
    short, long = prompts_of_lengths([4, 90], model.config.vocab_size, seed=9)
    engine = Engine(model, tokenizer, max_slots=3, max_prefill_tokens=20)
    streaming = engine._submit(short, SamplingParams(max_tokens=12, **GREEDY), None, None)
    engine.step()
    late = engine._submit(long, SamplingParams(max_tokens=4, **GREEDY), None, None)
    seen = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, args, out: seen.append(args[0].numel()))
    try:
        for _ in range(5):  # 90 prompt tokens in chunks of 20: five steps, each with one decode token
            before = len(streaming.candidates[0].tokens)
            engine.step()
            assert len(streaming.candidates[0].tokens) == before + 1
        assert engine.num_prefilling == 0 and len(late.candidates[0].tokens) == 1
    finally:
        hook.remove()
    assert seen == [21, 21, 21, 21, 11]
    while engine.has_unfinished():
        engine.step()
    assert late.candidates[0].tokens == reference(model, long, 4)
    assert streaming.candidates[0].tokens == reference(model, short, 12)


def test_cancel_mid_prefill_frees_the_slots(model, tokenizer):
    engine = Engine(model, tokenizer, max_slots=2, max_prefill_tokens=8)
    rid = engine.submit(prompts_of_lengths([40], model.config.vocab_size)[0], SamplingParams(n=2, max_tokens=4))
    engine.step()
    assert engine.num_prefilling == 1 and engine.cache.free_slots == 0
    assert engine.cancel(rid)
    assert engine.num_prefilling == 0 and engine.cache.free_slots == 2 and not engine.has_unfinished()


def test_memory_budget_admission_waits_or_refuses(model, tokenizer):
    per_slot = bytes_per_token(model.config, torch.float32) * 64
    engine = Engine(model, tokenizer, max_len=64, memory_budget_bytes=per_slot * 3)
    assert engine.cache.nbytes == per_slot * 3
    with pytest.raises(InvalidRequestError, match="memory budget holds 3"):
        engine.submit([5, 6, 7], SamplingParams(n=4, max_tokens=8))
    first = engine._submit([5, 6, 7], SamplingParams(n=2, max_tokens=6, **GREEDY), None, None)
    second = engine._submit([8, 9], SamplingParams(n=2, max_tokens=3, **GREEDY), None, None)
    engine.step()
    assert engine.num_running == 2 and engine.num_waiting == 1  # two slots are not free: it waits
    while not first.finished:
        engine.step()
        assert engine.num_running + 2 * engine.num_waiting <= 4
    while engine.has_unfinished():
        engine.step()
    assert second.candidates[0].tokens == reference(model, [8, 9], 3) and engine.cache.free_slots == 3
