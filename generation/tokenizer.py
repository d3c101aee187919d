"""Zhufu's tokenizer: character level with byte fallback, trained on the corpus texts.

Character tokens map one to one onto what a greeting is made of; the byte tokens
(``<0x00>``..``<0xFF>``) serve only characters never seen in training, so nothing is unknown and
decoding round-trips exactly. (Why not byte-level BPE: README, Benchmarks, ``python -m
generation.tokenizer``.) Sequence layout (``build_example``)::

    <bos> 请只生成一条祝福语：{query} <sep> {response} <eos>
    |------------- prompt ---------------|

The loss is masked on the prompt (its length is returned); generation feeds the prompt
(``encode_prompt``) and stops at ``<eos>``.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PROMPT_TEMPLATE = "请只生成一条祝福语：{query}"

PAD, BOS, EOS, SEP = "<pad>", "<bos>", "<eos>", "<sep>"
SPECIAL_TOKENS = [PAD, BOS, EOS, SEP]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def format_prompt(query: str) -> str:
    return PROMPT_TEMPLATE.format(query=query.strip())


def train_char_tokenizer(texts: Iterable[str], min_freq: int = 1) -> Tokenizer:
    """Characters seen at least ``min_freq`` times, plus 256 byte tokens for everything else."""
    counts = Counter()
    for text in texts:
        counts.update(text)
    counts.update(PROMPT_TEMPLATE.replace("{query}", "") * min_freq)  # the template is always known
    chars = sorted(c for c, n in counts.items() if n >= min_freq)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + BYTE_TOKENS)}
    for char in chars:
        vocab.setdefault(char, len(vocab))
    # A BPE with no merges is a character model; byte_fallback spells unseen characters as bytes.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, fuse_unk=False))
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def train_byte_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 4000, min_freq: int = 2) -> Tokenizer:
    """GPT-2 style byte-level BPE, for the comparison."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_freq,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """The Hugging Face wrapper that save_pretrained / AutoTokenizer.from_pretrained understand."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        sep_token=SEP,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )


def build_tokenizer(texts: Iterable[str], min_freq: int = 1) -> PreTrainedTokenizerFast:
    return wrap(train_char_tokenizer(texts, min_freq=min_freq))


def example_texts(examples: Iterable[tuple[str, str]]) -> list[str]:
    """The strings a tokenizer sees for (query, response) examples."""
    return [text for query, response in examples for text in (format_prompt(query), response)]


def encode_prompt(tokenizer, query: str) -> list[int]:
    """Token ids of the prompt up to and including <sep>: what generation is fed."""
    body = tokenizer.encode(format_prompt(query), add_special_tokens=False)
    return [tokenizer.bos_token_id, *body, tokenizer.sep_token_id]


def build_example(tokenizer, query: str, response: str) -> tuple[list[int], int]:
    """Token ids of one training example and the prompt length (tokens the loss ignores)."""
    prompt = encode_prompt(tokenizer, query)
    answer = tokenizer.encode(response.strip(), add_special_tokens=False)
    return prompt + answer + [tokenizer.eos_token_id], len(prompt)


def tokenizer_figures(tok: Tokenizer, texts: list[str]) -> dict:
    """Vocabulary size, characters per token, and the share of characters with no vocabulary entry."""
    n_chars = sum(len(t) for t in texts)
    n_tokens = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
    vocab = tok.get_vocab()
    unknown = sum(1 for t in texts for c in t if c not in vocab)
    return {
        "vocab_size": tok.get_vocab_size(),
        "chars_per_token": round(n_chars / max(n_tokens, 1), 3),
        "unknown_rate": round(unknown / max(n_chars, 1), 5),
    }


def bpe_partial_char_rate(tok: Tokenizer, texts: list[str]) -> float:
    """Share of non-ASCII characters the byte-level BPE cannot emit as (part of) one token."""
    vocab = tok.get_vocab()
    encoder = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    chars = [c for text in texts for c in text if ord(c) > 127]
    missing = sum(1 for c in chars if encoder.pre_tokenize_str(c)[0][0] not in vocab)
    return round(missing / max(len(chars), 1), 5)


def compare_tokenizers(train_texts: list[str], heldout_texts: list[str], min_freq: int = 2) -> dict:
    char_tok = train_char_tokenizer(train_texts, min_freq=min_freq)
    bpe_tok = train_byte_bpe_tokenizer(train_texts, vocab_size=char_tok.get_vocab_size())
    bpe = tokenizer_figures(bpe_tok, heldout_texts)
    # Bytes always encode, so nothing is "unknown"; what matters is characters left as byte pieces.
    bpe["unknown_rate"] = bpe["char_split_rate"] = bpe_partial_char_rate(bpe_tok, heldout_texts)
    return {"char": tokenizer_figures(char_tok, heldout_texts), "byte_bpe": bpe}


if __name__ == "__main__":  # the comparison in the README's Benchmarks table
    import json
    import sys
    from pathlib import Path

    from training.data.examples import load_examples, split_by_query

    path = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/igniting/sft_data.json")
    train, heldout = split_by_query(load_examples([path]), 0.1, seed=0)
    print(json.dumps(compare_tokenizers(example_texts(train), example_texts(heldout)), indent=2))
