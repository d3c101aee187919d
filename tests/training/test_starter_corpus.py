"""Checks on the team-written starter corpus under training/data/starter/ (plain pytest, no Django)."""
import json
import statistics
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require_shared_data

REPO = Path(__file__).resolve().parents[2]
STARTER = REPO / "training" / "data" / "starter"

TONES = ("温馨", "幽默", "古风", "正式", "文艺")
REQUIRED_KEYS = ("query", "response", "label", "occasion", "recipient", "tone")
NGRAM = 12


def load_lines():
    lines = []
    with open(STARTER / "greetings.jsonl", encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                try:
                    lines.append(json.loads(raw))
                except json.JSONDecodeError as error:  # pragma: no cover - reported as a failure
                    pytest.fail(f"greetings.jsonl line {number} is not JSON: {error}")
    return lines


def load_pairs():
    with open(STARTER / "pairs.json", encoding="utf-8") as handle:
        return json.load(handle)


def load_queries():
    text = (STARTER / "queries.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def lines():
    return load_lines()


@pytest.fixture(scope="module")
def good(lines):
    return [line for line in lines if line["label"] == 1]


@pytest.fixture(scope="module")
def pairs():
    return load_pairs()


def test_files_exist():
    for name in ("greetings.jsonl", "pairs.json", "queries.txt", "README.md"):
        assert (STARTER / name).is_file(), name


def test_every_line_has_the_required_keys(lines):
    assert lines
    for line in lines:
        for key in REQUIRED_KEYS:
            assert key in line, (key, line)
            if key != "label":
                assert isinstance(line[key], str) and line[key].strip(), (key, line)
        assert line["label"] in (0, 1) and not isinstance(line["label"], bool), line
        assert line["tone"] in TONES, line
        if line["label"] == 0:
            assert isinstance(line.get("flaw"), str) and line["flaw"].strip(), line


def test_enough_good_greetings(good):
    assert len(good) >= 420


def test_enough_occasion_recipient_combinations(good):
    combos = {(line["occasion"], line["recipient"]) for line in good}
    assert len(combos) >= 40


def test_each_tone_well_represented(good):
    counts = Counter(line["tone"] for line in good)
    for tone in TONES:
        assert counts[tone] >= 50, (tone, counts)


def test_no_duplicate_responses(lines):
    counts = Counter(line["response"] for line in lines)
    duplicates = [text for text, count in counts.items() if count > 1]
    assert not duplicates, duplicates


def test_weak_greetings_are_not_simply_short(lines, good):
    bad = [line for line in lines if line["label"] == 0]
    assert len(bad) >= 50
    typical = statistics.median(len(line["response"]) for line in good)
    long_bad = [line for line in bad if len(line["response"]) >= typical]
    assert len(long_bad) >= 0.4 * len(bad), (len(long_bad), len(bad), typical)


def test_pairs_format_and_counts(pairs):
    assert isinstance(pairs, list)
    assert len(pairs) >= 160
    queries = set()
    for pair in pairs:
        conversation = pair["conversations"]
        assert len(conversation) == 1 and conversation[0]["from"] == "human"
        assert conversation[0]["value"].strip()
        assert pair["chosen"]["from"] == "gpt" and pair["chosen"]["value"].strip()
        assert pair["rejected"]["from"] == "gpt" and pair["rejected"]["value"].strip()
        assert pair["chosen"]["value"] != pair["rejected"]["value"]
        queries.add(conversation[0]["value"])
    assert len(queries) >= 40


def test_pairs_do_not_reward_length(pairs):
    longer_or_equal = sum(len(p["rejected"]["value"]) >= len(p["chosen"]["value"]) for p in pairs)
    assert longer_or_equal >= 0.4 * len(pairs), (longer_or_equal, len(pairs))


def test_queries_file(lines):
    queries = load_queries()
    assert len(set(queries)) >= 120
    assert len(set(queries)) == len(queries), "queries.txt has duplicate lines"
    in_corpus = {line["query"] for line in lines}
    assert set(queries) - in_corpus, "queries.txt should hold queries that greetings.jsonl lacks"


# --- The grown corpus: greetings_<part>.jsonl (slot-labelled greetings) and pairs_<part>.jsonl (flawed pairs).
FLAWS = ("wrong_occasion", "wrong_addressee", "spliced", "repetition", "garbled", "cliche", "ignores_constraint")


def load_jsonl(pattern):
    rows = []
    for path in sorted(STARTER.glob(pattern)):
        for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if raw.strip():
                rows.append(json.loads(raw))
    return rows


@pytest.fixture(scope="module")
def grown():
    return load_jsonl("greetings_*.jsonl")


@pytest.fixture(scope="module")
def flawed():
    return load_jsonl("pairs_*.jsonl")


def test_grown_greetings_use_the_request_slot_vocabulary(grown):
    from generation.requests import ADDRESSEES, OCCASIONS, TONES as SLOT_TONES

    assert grown
    for row in grown:
        assert row["label"] == 1 and row["query"].strip() and row["response"].strip(), row
        assert row["occasion"] in OCCASIONS and row["tone"] in SLOT_TONES, row
        assert row["recipient"] == "" or row["recipient"] in ADDRESSEES, row


def test_the_team_corpus_is_big_and_varied_enough(good, grown):
    rows = [dict(line, length=line.get("length", "")) for line in good] + grown
    assert len(rows) >= 3000
    assert len({(r["occasion"], r["recipient"]) for r in rows}) >= 150
    assert len({r["query"] for r in rows}) >= 1500
    lengths = Counter(r.get("length", "") for r in grown)
    assert all(lengths[kind] >= 20 for kind in ("四字", "一句", "简短", "长")), lengths
    assert sum(bool(r.get("details")) for r in grown) >= 0.2 * len(grown)


def test_no_greeting_is_written_twice_across_the_files(lines, grown):
    counts = Counter(line["response"] for line in lines + grown)
    assert not [text for text, count in counts.items() if count > 1]


def test_flawed_pairs_cover_every_flaw_and_do_not_reward_length(flawed):
    assert len(flawed) >= 600
    kinds = Counter(pair["flaw"] for pair in flawed)
    assert set(kinds) <= set(FLAWS) and all(kinds[k] >= 60 for k in FLAWS), kinds
    assert all(pair["chosen"] != pair["rejected"] for pair in flawed)
    longer = sum(len(p["rejected"]) >= len(p["chosen"]) for p in flawed)
    assert longer >= 0.35 * len(flawed), (longer, len(flawed))


def _public_texts(folder: Path):
    """Every response text in the public files (SFT outputs, pairwise chosen/rejected, evaluation responses)."""
    texts = []
    sft = folder / "sft_data.json"
    if sft.is_file():
        texts += [record.get("output", "") for record in json.loads(sft.read_text(encoding="utf-8"))]
    reward = folder / "reward_data_train.json"
    if reward.is_file():
        for record in json.loads(reward.read_text(encoding="utf-8")):
            texts += [record["chosen"]["value"], record["rejected"]["value"]]
    evaluate = folder / "evaluate_data.json"
    if evaluate.is_file():
        for raw in evaluate.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                texts.append(json.loads(raw).get("response", ""))
    return [text for text in texts if text]


@pytest.mark.shared_data
def test_no_leakage_from_public_data(lines, pairs, grown, flawed):
    public_dir = require_shared_data()
    public = _public_texts(public_dir)
    assert public, f"no public texts found under {public_dir}"

    ours = {line["response"] for line in lines + grown}
    for pair in pairs:
        ours.add(pair["chosen"]["value"])
        ours.add(pair["rejected"]["value"])
    for pair in flawed:
        ours |= {pair["chosen"], pair["rejected"]}

    # Verbatim: none of our texts is one of the public texts.
    public_set = {text.strip() for text in public}
    verbatim = sorted(text for text in ours if text.strip() in public_set)
    assert not verbatim, verbatim[:5]

    # Near-verbatim: no 12-character substring of ours occurs in any public response.
    grams = {}
    for text in ours:
        for start in range(len(text) - NGRAM + 1):
            grams.setdefault(text[start:start + NGRAM], text)
    shared = set()
    for text in public:
        for start in range(len(text) - NGRAM + 1):
            gram = text[start:start + NGRAM]
            if gram in grams:
                shared.add(gram)
    assert not shared, [(gram, grams[gram]) for gram in sorted(shared)[:5]]
