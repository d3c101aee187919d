"""The greeting path's text and budget rules (generation/greeting.py), without Django."""
import random
import unicodedata

import pytest

from generation.backends import GenerationBackend
from generation.engine import StreamEvent
from generation.greeting import (FinalText, RequestTooLong, control_characters, final_text, normalise_text,
                                 stream_greetings, token_budget, write_greetings)

# Characters that the one normalisation changes, each with what it becomes.
CHANGED = {
    "\u0374": "\u02b9",  # GREEK NUMERAL SIGN: canonically U+02B9 (the character of the newcomer's failure)
    "e\u0301": "\u00e9",  # a base and its combining mark compose
    "\u212b": "\u00c5",  # ANGSTROM SIGN
    "\u0000": "",  # NUL: PostgreSQL text refuses it
    "\u0007": "",  # another control character
    "\ud800": "",  # a lone surrogate (a JSON escape that is not Unicode)
    "\ufffd": "",  # a byte-fallback token that never made a character
    "\r\n": "\n",
}
KEPT = "祝您，福如东海！①ｆｕｌｌ\t👨\u200d👩\u200d👧"  # full-width forms and emoji joiners stay as written


@pytest.mark.parametrize("raw,expected", list(CHANGED.items()))
def test_final_text_changes_what_it_must(raw, expected):
    assert final_text(f"祝{raw}福") == f"祝{expected}福"


def test_final_text_keeps_chinese_punctuation_compatibility_forms_and_joiners():
    assert final_text(KEPT) == KEPT
    assert final_text("  \n祝福\n  ") == "祝福"


def test_final_text_is_stable_and_matches_the_corpus_form():
    raw = "".join(CHANGED) + KEPT
    once = final_text(raw)
    assert final_text(once) == once == normalise_text(once)
    assert unicodedata.is_normalized("NFC", once) and not control_characters(once.replace("\u200d", ""))


def test_streamed_pieces_add_up_to_the_final_text_however_the_text_is_cut():
    alphabet = list("ae福，祝 \n\r\t") + ["\u0301", "\u0323", "\u0374", "\u1100", "\u1161", "\u11a8", "\uac00",
                                       "\x00", "\ufffd", "\ud800", "A\u030a", "\u212b"]
    rng = random.Random(0)
    for _ in range(3000):
        pieces = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))) for _ in range(rng.randint(1, 8))]
        text = FinalText()
        sent = "".join(text.feed(piece) for piece in pieces) + text.finish()
        assert sent == text.text == final_text("".join(pieces)), pieces


def test_a_piece_is_held_back_while_a_combining_mark_may_still_join_it():
    text = FinalText()
    assert text.feed("祝e") == "祝"
    assert text.feed("\u0301") == ""
    assert text.feed("福") == "é"
    assert text.finish() == "福"


class ScriptedBackend(GenerationBackend):
    """Streams fixed texts one character at a time, with a context of `max_len` tokens (one a character)."""

    def __init__(self, texts, max_len=None):
        self.texts, self.max_len, self.params = texts, max_len, None

    def greeting_prompt(self, query):
        return list(query.encode())

    def room(self, prompt):
        return None if self.max_len is None else self.max_len - len(prompt)

    def stream(self, prompt, params):
        self.params = params
        for index in range(params.n):
            for char in self.texts[index]:
                yield StreamEvent("r", index, char, False, None)
            yield StreamEvent("r", index, "", True, "stop")


def test_write_greetings_returns_final_texts_and_stops_at_a_blank_line():
    backend = ScriptedBackend([" 祝\x00你e\u0301 ", "平安\ufffd"])
    assert write_greetings(backend, "q", 2, seed=7) == ["祝你é", "平安"]
    assert backend.params.stop == ["\n\n"] and backend.params.seed == 7 and backend.params.n == 2


def test_stream_greetings_yields_each_drafts_text_so_far_then_finishes_it():
    drafts = [(d.index, d.text, d.finished) for d in stream_greetings(ScriptedBackend(["ab"]), "q", 1)]
    assert drafts == [(0, "a", False), (0, "ab", False), (0, "ab", False), (0, "ab", True)]


def test_the_budget_is_what_was_asked_or_what_the_context_leaves():
    assert token_budget(ScriptedBackend([], max_len=None), [1] * 50, 96) == 96
    assert token_budget(ScriptedBackend([], max_len=128), [1] * 50, 96) == 78
    assert token_budget(ScriptedBackend([], max_len=128), [1] * 10, 96) == 96
    with pytest.raises(RequestTooLong, match="too long"):
        token_budget(ScriptedBackend([], max_len=128), [1] * 128, 96)
    with pytest.raises(RequestTooLong):
        write_greetings(ScriptedBackend(["x"], max_len=4), "long", 1)


def test_the_request_limit_leaves_an_answers_room():
    from generation.greeting import request_limit

    assert request_limit(256, 500) == 128 and request_limit(1024, 500) == 500 and request_limit(64, 500) == 16


def test_control_characters_names_what_typed_input_may_not_hold():
    assert control_characters("祝\x00福\u200b\t\n") == ["U+0000", "U+200B"]
