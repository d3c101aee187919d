"""The paper's full public files import, by path and by URL, with the counts they really hold.

The data lives outside the repository (no licence: never copied in), beside the clone in
../shared/data/igniting. Missing data fails under CI=true and skips elsewhere.
"""
from pathlib import Path

import pytest

from tests.conftest import require_shared_data
from tests.webapp.corpus.test_import_corpus import counts, db_counts, serve_folder
from webapp.corpus.models import Greeting, Label, PreferencePair, Query
from webapp.corpus.services import import_file

pytestmark = [pytest.mark.django_db, pytest.mark.shared_data]


@pytest.fixture
def data_dir() -> Path:
    return require_shared_data()


# name, format, label source, records read, distinct queries, (greetings, pairs, labels) rows made
FILES = [
    ("sft_data.json", "alpaca", "corpus", 4000, 4000, (4000, 0, 4000)),
    # 12 pairs have chosen == rejected: their greeting is kept, no pair is made.
    ("reward_data_train.json", "pairwise", "corpus", 6310, 6310, (6310 * 2 - 12, 6310 - 12, 0)),
    ("grpo_train.parquet", "verl", "corpus", 3200, 3110, (0, 0, 0)),
    ("random_query.txt", "queries", "corpus", 10000, 8138, (0, 0, 0)),
    # 5 (query, response) records repeat with the same label.
    ("evaluate_data.json", "labeled", "click", 2000, 1942, (1995, 0, 1995)),
]


@pytest.mark.parametrize("name, fmt, label_source, records, queries, rows", FILES, ids=[f[0] for f in FILES])
def test_each_public_file_imports_by_path(data_dir, name, fmt, label_source, records, queries, rows):
    summary = import_file(data_dir / name, label_source=label_source, progress=False)
    assert (summary.fmt, summary.records, summary.skipped, summary.conflicts) == (fmt, records, [], [])
    greetings, pairs, labels = rows
    expected = {"queries": (queries, 0), "greetings": (greetings, 0), "pairs": (pairs, 0), "labels": (labels, 0)}
    assert counts(summary) == expected
    assert db_counts() == {kind: new for kind, (new, _) in expected.items()}
    if fmt == "pairwise":
        assert len(summary.ties) == 12
    if fmt == "labeled":
        assert Label.objects.filter(source_kind="click", value="good").count() == 1004  # README: 1,004 good
        assert not Label.objects.exclude(source_kind="click").exists()


def test_all_files_together_then_again_add_nothing(data_dir):
    for name, _, label_source, *_ in FILES:
        import_file(data_dir / name, label_source=label_source, progress=False)
    total = db_counts()
    # Every query of every file, measured once: the five files share many queries.
    assert total["queries"] == len({q.text for q in Query.objects.all()}) == 11203
    assert total["pairs"] == 6298 and total["labels"] == 4000 + 1995
    # README: 989 of the 1,004 good responses of evaluate_data.json are the chosen answer of the same query.
    good = Greeting.objects.filter(labels__source_kind="click", labels__value="good")
    assert good.filter(chosen_in__isnull=False).distinct().count() == 989
    again = import_file(data_dir / "reward_data_train.json", progress=False)
    assert again.new_rows == 0 and counts(again)["pairs"] == (0, 6298)
    assert db_counts() == total


def test_public_files_import_by_url(data_dir):
    with serve_folder(data_dir) as base:
        pairs = import_file(f"{base}/reward_data_train.json", progress=False)
        labeled = import_file(f"{base}/evaluate_data.json", label_source="click", progress=False)
    assert (pairs.fmt, pairs.records, counts(pairs)["pairs"]) == ("pairwise", 6310, (6298, 0))
    assert (labeled.fmt, labeled.records, counts(labeled)["labels"]) == ("labeled", 2000, (1995, 0))
    assert PreferencePair.objects.filter(origin="reward_data_train.json").count() == 6298
    assert Label.objects.filter(source_name="evaluate_data.json", source_kind="click").count() == 1995
