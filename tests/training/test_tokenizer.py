"""Tokenizer, prompt format, loss masking, and the example loader / split by query."""
import json

from transformers import AutoTokenizer

from generation.tokenizer import (
    BYTE_TOKENS,
    PROMPT_TEMPLATE,
    build_example,
    build_tokenizer,
    compare_tokenizers,
    encode_prompt,
    format_prompt,
)
from training.data.examples import load_examples, split_by_query
from training.steps import IGNORE, collate

CORPUS = ["祝你生日快乐，万事如意！🎂", "新年快乐，身体健康", "考试顺利，金榜题名"]


def test_round_trip_chinese_emoji_and_unseen_characters():
    tok = build_tokenizer(CORPUS)
    # 龘 and 🦄 never occur in the corpus: they must come back exactly through byte fallback.
    text = "祝你新年快乐🎂 龘🦄 Happy 2025!"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert tok.unk_token_id is None or tok.unk_token_id not in ids


def test_unseen_character_is_spelled_in_bytes_and_seen_one_is_one_token():
    tok = build_tokenizer(CORPUS)
    byte_ids = set(tok.convert_tokens_to_ids(BYTE_TOKENS))
    assert len(tok.encode("祝", add_special_tokens=False)) == 1
    unseen = tok.encode("龘", add_special_tokens=False)
    assert len(unseen) == 3 and set(unseen) <= byte_ids  # three UTF-8 bytes


def test_prompt_format_is_the_papers():
    assert PROMPT_TEMPLATE == "请只生成一条祝福语：{query}"
    assert format_prompt(" 七十生日祝福语 ") == "请只生成一条祝福语：七十生日祝福语"


def test_build_example_layout_and_prompt_length():
    tok = build_tokenizer(CORPUS)
    ids, n_prompt = build_example(tok, "生日祝福", "祝你生日快乐")
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert ids[n_prompt - 1] == tok.sep_token_id
    assert ids[:n_prompt] == encode_prompt(tok, "生日祝福")
    assert tok.decode(ids[1 : n_prompt - 1]) == "请只生成一条祝福语：生日祝福"
    assert tok.decode(ids[n_prompt:-1]) == "祝你生日快乐"


def test_loss_mask_covers_prompt_and_padding_only():
    tok = build_tokenizer(CORPUS)
    a = build_example(tok, "生日", "祝你快乐")
    b = build_example(tok, "新年祝福语", "新年快乐，万事如意")
    input_ids, labels, n_tokens = collate([a, b], tok.pad_token_id)
    assert n_tokens == len(a[0]) + len(b[0])
    for row, (ids, n_prompt) in enumerate([a, b]):
        assert (labels[row, :n_prompt] == IGNORE).all()
        assert labels[row, n_prompt : len(ids)].tolist() == ids[n_prompt:]
        assert (labels[row, len(ids) :] == IGNORE).all()
        assert (input_ids[row, len(ids) :] == tok.pad_token_id).all()


def test_saved_tokenizer_loads_with_stock_autotokenizer(tmp_path):
    tok = build_tokenizer(CORPUS)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "新年快乐龘🦄"
    assert loaded.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)
    assert (loaded.pad_token, loaded.bos_token, loaded.eos_token, loaded.sep_token) == ("<pad>", "<bos>", "<eos>", "<sep>")


def test_compare_tokenizers_reports_unknown_rate_on_heldout():
    figures = compare_tokenizers(CORPUS * 3, ["龘龘祝你快乐"], min_freq=1)
    assert figures["char"]["unknown_rate"] == round(2 / 6, 5)
    assert figures["char"]["vocab_size"] > len(BYTE_TOKENS)
    assert figures["byte_bpe"]["chars_per_token"] > 0


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def test_load_examples_keeps_good_unique_examples(tmp_path):
    labeled = _write(tmp_path / "l.jsonl", [
        {"query": "生日", "response": "生日快乐", "label": 1},
        {"query": "生日", "response": "生日快乐", "label": 1},  # duplicate
        {"query": "生日", "response": "随便", "label": 0},  # bad
    ])
    pairs = tmp_path / "p.json"
    pairs.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "新年"}], "chosen": {"from": "gpt", "value": "新年好"},
         "rejected": {"from": "gpt", "value": "好"}},
        {"conversations": [{"from": "human", "value": "平局"}], "chosen": {"from": "gpt", "value": "一样"},
         "rejected": {"from": "gpt", "value": "一样"}},  # a tie carries no preference
    ], ensure_ascii=False), encoding="utf-8")
    assert load_examples([labeled, pairs]) == [("生日", "生日快乐"), ("新年", "新年好")]


def test_split_by_query_never_puts_a_query_on_both_sides():
    examples = [(f"q{i % 10}", f"r{i}") for i in range(50)]
    train, heldout = split_by_query(examples, 0.3, seed=1)
    assert {q for q, _ in train}.isdisjoint({q for q, _ in heldout})
    assert len({q for q, _ in heldout}) == 3
    assert sorted(train + heldout) == sorted(examples)
    assert split_by_query(examples, 0.3, seed=1) == (train, heldout)
