"""Where a request becomes a greeting (no Django here): the sampling settings, the stop string,
the token budget, the rounds of the serve-time guards, and the one normalisation of model output.

Every writer of greetings calls `stream_greetings` or `write_greetings`: the studio, annotation
builds, checkpoint comparisons, bench.greetings. The OpenAI-compatible API keeps its caller's
sampling parameters but takes its default budget and its text (`FinalText`) from here.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from generation.engine import SamplingParams
from generation.guards import Budget, Checked, Guards, best_of
from generation.requests import LengthSpec, RequestSlots

STOP = ("\n\n",)  # a greeting is one paragraph block; the model's blank line ends it
TEMPERATURE = 0.8
TOP_P = 0.95
# The small model stutters (爷爷爷, 身体健康，身体健康): no character thrice in a row, no 4-gram twice.
MAX_TOKEN_RUN = 2
NO_REPEAT_NGRAM = 4
DEFAULT_MAX_TOKENS = 96
MAX_TOKENS_BY_LENGTH = {"短": 48, "中": 96, "长": 160, "": DEFAULT_MAX_TOKENS}
_DROPPED_CATEGORIES = ("Cc", "Cs")


# The prompt around a request (template, special tokens, slot labels 场合：…｜) takes about this many
# tokens; our tokenizer spends about one token per Chinese character.
PROMPT_OVERHEAD_TOKENS = 32


def request_limit(context_tokens: int, ceiling: int) -> int:
    """The longest request (characters) that leaves a default answer's room in the context (a
    small test model's context keeps half for the answer and a quarter for the prompt's frame)."""
    answer = min(DEFAULT_MAX_TOKENS, context_tokens // 2)
    frame = min(PROMPT_OVERHEAD_TOKENS, context_tokens // 4)
    return max(1, min(ceiling, context_tokens - answer - frame))


class RequestTooLong(ValueError):
    """The prompt leaves no room for an answer in the model's context."""


# --- Text.
def normalise_text(text: str) -> str:
    """NFC, one newline convention, no surrounding blanks: how the corpus stores every text."""
    return _nfc_lines(text).strip()


def _nfc_lines(text: str) -> str:
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")


def control_characters(text: str) -> list[str]:
    """Control and format characters in typed input (other than newline and tab) and lone
    surrogates, as U+XXXX names: forms and imports refuse them with these names instead of
    changing what a person typed."""
    return [f"U+{ord(c):04X}" for c in text if unicodedata.category(c) in ("Cc", "Cf", "Cs") and c not in "\n\t"]


def final_text(raw: str) -> str:
    """The one normalisation of model output: controls (but newline and tab), lone surrogates and
    U+FFFD dropped, then NFC, newlines unified, ends stripped. NFC and not NFKC: compatibility
    folding would turn Chinese full-width punctuation (，。！) into ASCII, while NFC only merges
    canonically equal spellings (U+0374 and U+02B9 print alike), so the card, the stored
    candidate, the corpus greeting and the API answer are one string."""
    return normalise_text(_printable(raw))


def _printable(raw: str) -> str:
    return "".join(c for c in raw if not _dropped(c))


def _dropped(c: str) -> bool:
    # NUL and other controls: PostgreSQL text refuses NUL, and none prints; lone surrogates cannot be
    # encoded as UTF-8; U+FFFD is a byte-fallback token that never made a whole character.
    return (unicodedata.category(c) in _DROPPED_CATEGORIES and c not in "\n\t") or c == "\ufffd"


class FinalText:
    """Model output arriving in pieces, kept as its final text.

    ``text`` is always `final_text` of what arrived; ``feed`` returns only the part that no later
    piece can change (a combining mark may still join the last character, a blank may turn out to
    be trailing), so the pieces a stream sends add up to the final text exactly."""

    def __init__(self) -> None:
        self.raw = ""
        self.sent = ""

    @property
    def text(self) -> str:
        return final_text(self.raw)

    def feed(self, delta: str) -> str:
        self.raw += delta
        stable = _stable_prefix(_nfc_lines(_printable(self.raw)).lstrip())  # final_text but for the end
        return self._send(stable)

    def finish(self) -> str:
        return self._send(self.text)

    def _send(self, upto: str) -> str:
        if not upto.startswith(self.sent) or len(upto) <= len(self.sent):
            return ""
        piece, self.sent = upto[len(self.sent):], upto
        return piece


def _stable_prefix(text: str) -> str:
    """`text` without its trailing blanks and without the last character that a following one could
    still compose with (NFC joins a starter with the marks after it)."""
    last = len(text.rstrip()) - 1
    while last >= 0 and not _safe_boundary(text[last]):
        last -= 1
    return text[:last] if last > 0 else ""


def _safe_boundary(c: str) -> bool:
    """Whether nothing before `c` can compose with it (a starter that never ends a composition)."""
    return unicodedata.combining(c) == 0 and c not in _second_of_a_composition()


@lru_cache(maxsize=1)
def _second_of_a_composition() -> frozenset[str]:
    seconds = {chr(c) for c in range(0x1161, 0x1176)} | {chr(c) for c in range(0x11A8, 0x11C3)}  # Hangul V, T
    for code in range(0x110000):
        decomposition = unicodedata.decomposition(chr(code))
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            if len(parts) == 2:
                seconds.add(chr(int(parts[1], 16)))
    return frozenset(seconds)


# --- Request slots as stored with a request (JSON), and as the card shows them.
def slots_record(slots: RequestSlots) -> dict:
    record = {name: getattr(slots, name) for name in ("occasion", "addressee", "relationship", "tone", "count", "age")}
    record["length"] = None if slots.length is None else {"kind": slots.length.kind, "target": slots.length.target}
    return record | {"details": slots.details, "conflicts": list(slots.conflicts)}


def slots_from_record(record: dict) -> RequestSlots:
    length = record.get("length")
    return RequestSlots(
        record.get("occasion"), record.get("addressee"), record.get("relationship"), record.get("tone"),
        LengthSpec(length["kind"], length.get("target")) if length else None, record.get("count"), record.get("age"),
        record.get("details") or "", tuple(record.get("conflicts") or ()))


def slot_chips(slots: RequestSlots) -> list[str]:
    """What a card says it was written for: 元宵 · 老板 · 12字 · 古风."""
    chips = [slots.occasion, slots.addressee, slots.length.render() if slots.length else None, slots.tone,
             f"{slots.age}岁" if slots.age is not None else None]
    return [chip for chip in chips if chip]


# --- Budget and sampling.
def token_budget(backend, prompt, wanted: int) -> int:
    """`wanted` new tokens, or fewer when the backend's context has less room after `prompt`."""
    room = backend.room(prompt)
    if room is None:
        return wanted
    if room < 1:
        raise RequestTooLong("请求太长，模型放不下。 The request is too long for this model's context "
                             f"({len(prompt)} prompt tokens leave no room for an answer).")
    return min(wanted, room)


def sampling_params(n: int, max_tokens: int, seed: int | None = None, temperature: float = TEMPERATURE,
                    top_p: float = TOP_P) -> SamplingParams:
    return SamplingParams(n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                          stop=list(STOP), max_token_run=MAX_TOKEN_RUN, no_repeat_ngram_size=NO_REPEAT_NGRAM)


# --- Writing.
@dataclass
class Draft:
    """One candidate place as it is being written: its final text so far, and once it is chosen,
    what the guards said (``checked``) and how many texts were sampled for the place."""
    index: int
    text: str = ""
    finished: bool = False
    finish_reason: str = ""
    attempts: int = 1
    checked: Checked | None = field(default=None, repr=False)


def stream_greetings(backend, query: str, n: int, *, guards: Guards | None = None, budget: Budget = Budget(),
                     taken: Sequence[str] = (), max_tokens: int = DEFAULT_MAX_TOKENS, seed: int | None = None,
                     temperature: float = TEMPERATURE, top_p: float = TOP_P) -> Iterator[Draft]:
    """``n`` greetings for the model query `query`, as drafts that change piece by piece.

    Without guards every place keeps its first text. With guards, a finished text that fails one
    is written again (its draft starts over) for at most ``budget.rounds`` more rounds; then each
    place still failing takes the least bad distinct text drawn. The last draft yielded for a place
    is its final one, with ``checked`` set. ``taken``: texts already on the page (the other cards of
    a rewrite), which no place may repeat. Raises RequestTooLong before any sampling when the
    prompt fills the context."""
    prompt = backend.greeting_prompt(query)
    max_tokens = token_budget(backend, prompt, max_tokens)
    chosen: dict[int, Checked] = {}
    attempts, pool = [0] * n, []
    places = list(range(n))
    for round_index in range(budget.rounds + 1 if guards else 1):
        round_seed = None if seed is None else seed + 7919 * round_index
        params = sampling_params(len(places), max_tokens, round_seed, temperature, top_p)
        written = yield from _one_round(backend, prompt, params, places, attempts)
        for place in places:  # in place order, so "distinct" prefers the earlier place
            draft = written[place]
            others = [*taken, *(c.text for c in chosen.values())]
            checked = guards.check(draft.text, others, draft.finish_reason) if guards else Checked(
                draft.text, {}, finish_reason=draft.finish_reason)
            pool.append(checked)
            if checked.passed:
                chosen[place] = checked
        places = [p for p in places if p not in chosen]
        if not places:
            break
    for place in places:
        chosen[place] = best_of(pool, [*taken, *(c.text for c in chosen.values())], guards)
    for place in range(n):
        checked = chosen[place]
        checked.attempts = attempts[place]
        yield Draft(place, checked.text, True, checked.finish_reason, attempts[place], checked)


def _one_round(backend, prompt, params: SamplingParams, places: list[int], attempts: list[int]):
    """Stream one text for each of `places` (yielding their drafts); returns {place: finished draft}."""
    drafts = {place: Draft(place, attempts=attempts[place] + 1) for place in places}
    texts = {place: FinalText() for place in places}
    for place in places:
        attempts[place] += 1
    for event in backend.stream(prompt, params):
        place = places[event.candidate_index]
        draft, text = drafts[place], texts[place]
        text.feed(event.text_delta)
        draft.text = text.text
        if event.finished:
            draft.finish_reason = event.finish_reason or "stop"
        yield Draft(place, draft.text, False, draft.finish_reason, draft.attempts)
    return drafts


def write_greetings(backend, query: str, n: int, **options) -> list[str]:
    """The final texts of ``n`` greetings for `query` (options as for `stream_greetings`)."""
    return [d.text for d in write_checked(backend, query, n, **options)]


def write_checked(backend, query: str, n: int, **options) -> list[Draft]:
    """The final drafts of ``n`` greetings for `query`, with what the guards said of each."""
    final: dict[int, Draft] = {}
    for draft in stream_greetings(backend, query, n, **options):
        if draft.checked is not None:
            final[draft.index] = draft
    return [final[i] for i in range(n)]
