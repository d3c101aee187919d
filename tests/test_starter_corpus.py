"""Checks on the team-written starter corpus under training/data/starter/ (plain pytest, no Django)."""
import json
import statistics
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require_shared_data

REPO = Path(__file__).resolve().parents[1]
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
def test_no_leakage_from_public_data(lines, pairs):
    public_dir = require_shared_data()
    public = _public_texts(public_dir)
    assert public, f"no public texts found under {public_dir}"

    ours = {line["response"] for line in lines}
    for pair in pairs:
        ours.add(pair["chosen"]["value"])
        ours.add(pair["rejected"]["value"])

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
