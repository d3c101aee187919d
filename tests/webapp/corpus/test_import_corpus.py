"""Importing data files into the corpus: counts, idempotence, rollback, --skip-bad, the command, URLs."""
import contextlib
import functools
import http.server
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from training.data.formats import FormatError
from webapp.corpus import services
from webapp.corpus.models import Greeting, Label, PreferencePair, Query
from webapp.corpus.services import CorpusImportError, import_file, import_starter_corpus

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.django_db


# --- Helpers


def write_json(path, value):
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def write_lines(path, objects):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects), encoding="utf-8")
    return path


def alpaca(query, output, extra=""):
    return {"instruction": query, "input": extra, "output": output}


def pair(query, chosen, rejected):
    return {"conversations": [{"from": "human", "value": query}],
            "chosen": {"from": "gpt", "value": chosen}, "rejected": {"from": "gpt", "value": rejected}}


def db_counts():
    return {"queries": Query.objects.count(), "greetings": Greeting.objects.count(),
            "pairs": PreferencePair.objects.count(), "labels": Label.objects.count()}


def counts(summary):
    return {kind: (count.new, count.existing) for kind, count in summary.counts.items()}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_folder(folder):
    """A real HTTP server on 127.0.0.1 (a free port) serving ``folder``; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- Each format becomes rows


def test_alpaca_becomes_queries_greetings_and_good_corpus_labels(tmp_path):
    path = write_json(tmp_path / "sft.json", [
        alpaca("给女生的生日祝福", "生日快乐，亲爱的女孩！"),
        alpaca("给女生的生日祝福", "愿你的新一岁闪闪发光！"),
        alpaca("写一句祝福", "老师辛苦了！", extra="给老师"),
        alpaca("给女生的生日祝福", "生日快乐，亲爱的女孩！"),  # a duplicate record
    ])
    summary = import_file(path, progress=False)
    assert summary.fmt == "alpaca" and summary.records == 4 and summary.skipped == []
    assert str(summary) == (f"{path} (alpaca): 4 records, 0 skipped; queries 2 new / 0 existing, "
                            "greetings 3 new / 0 existing, pairs 0 new / 0 existing, labels 3 new / 0 existing")
    assert counts(summary) == {"queries": (2, 0), "greetings": (3, 0), "pairs": (0, 0), "labels": (3, 0)}
    assert db_counts() == {"queries": 2, "greetings": 3, "pairs": 0, "labels": 3}
    assert Query.objects.filter(text="写一句祝福\n给老师").exists()
    greeting = Greeting.objects.get(text="老师辛苦了！")
    assert (greeting.source, greeting.origin, greeting.checkpoint_name) == ("corpus", "sft.json", "")
    assert set(Label.objects.values_list("value", "source_kind", "source_name")) == {("good", "corpus", "sft.json")}


def test_pairwise_becomes_two_greetings_and_a_pair_and_reports_ties(tmp_path):
    path = write_json(tmp_path / "pairs.json", [
        pair("生意兴隆的祝福语", "愿您财源滚滚，客似云来！", "生意好。"),
        pair("生意兴隆的祝福语", "愿您财源滚滚，客似云来！", "发财。"),  # same chosen greeting
        pair("新年祝福", "同一句", "同一句"),  # a tie: no pair
    ])
    summary = import_file(path, progress=False)
    assert counts(summary) == {"queries": (2, 0), "greetings": (4, 0), "pairs": (2, 0), "labels": (0, 0)}
    assert summary.ties == ["index 2"]
    first = PreferencePair.objects.get(rejected__text="生意好。")
    assert (first.query.text, first.chosen.text, first.source, first.origin) == (
        "生意兴隆的祝福语", "愿您财源滚滚，客似云来！", "corpus", "pairs.json")
    assert first.chosen.query_id == first.rejected.query_id == first.query_id


def test_labeled_becomes_labels_of_the_chosen_source_kind_with_meta(tmp_path):
    path = write_lines(tmp_path / "evaluate_data.json", [
        {"query": "七十生日祝福语", "response": "祝您七十岁生日快乐！", "label": 0, "occasion": "生日", "tone": "正式"},
        {"query": "七十生日祝福语", "response": "松鹤长春，福寿绵长！", "label": 1, "flaw": None},
        {"query": "考试", "response": "考试顺利！", "label": "1"},
    ])
    summary = import_file(path, progress=False, label_source="click")
    assert counts(summary) == {"queries": (2, 0), "greetings": (3, 0), "pairs": (0, 0), "labels": (3, 0)}
    labels = {(l.greeting.text, l.value, l.source_kind, l.source_name) for l in Label.objects.select_related("greeting")}
    assert labels == {("祝您七十岁生日快乐！", "bad", "click", "evaluate_data.json"),
                      ("松鹤长春，福寿绵长！", "good", "click", "evaluate_data.json"),
                      ("考试顺利！", "good", "click", "evaluate_data.json")}
    assert Greeting.objects.get(text="祝您七十岁生日快乐！").meta == {"occasion": "生日", "tone": "正式"}


def test_conflicting_labels_keep_the_first_and_are_reported(tmp_path):
    path = write_lines(tmp_path / "eval.jsonl", [
        {"query": "q", "response": "r", "label": 1},
        {"query": "q", "response": "r", "label": 0},
    ])
    summary = import_file(path, progress=False)
    assert Label.objects.get().value == "good"
    assert len(summary.conflicts) == 1 and "line 2" in summary.conflicts[0]
    edited = write_lines(tmp_path / "eval.jsonl", [{"query": "q", "response": "r", "label": 0}])
    again = import_file(edited, progress=False)
    assert Label.objects.get().value == "good"
    assert counts(again)["labels"] == (0, 1) and "stored good" in again.conflicts[0]


def test_queries_and_verl_become_queries(tmp_path):
    text = tmp_path / "random_query.txt"
    text.write_text("生日祝福语\n生日祝福语\n\n古风新年祝福语\n", encoding="utf-8")
    summary = import_file(text, progress=False)
    assert summary.records == 3 and counts(summary)["queries"] == (2, 0)

    verl = tmp_path / "grpo.parquet"
    prompts = [[{"role": "user", "content": f"请只生成一条祝福语：{q}"}] for q in ("古风新年祝福语", "三岁宝宝的祝福")]
    pq.write_table(pa.table({"prompt": prompts}), verl)
    summary = import_file(verl, progress=False)
    assert summary.fmt == "verl" and counts(summary)["queries"] == (1, 1)
    assert sorted(Query.objects.values_list("text", flat=True)) == sorted(["生日祝福语", "古风新年祝福语", "三岁宝宝的祝福"])
    assert db_counts()["greetings"] == 0


def test_texts_are_normalised_so_spacing_variants_are_one_row(tmp_path):
    path = write_json(tmp_path / "sft.json", [alpaca("生日祝福", "快乐！")])
    import_file(path, progress=False)
    variant = write_lines(tmp_path / "eval.jsonl", [{"query": "  生日祝福\r\n", "response": "快乐！ ", "label": 1}])
    summary = import_file(variant, progress=False)
    assert counts(summary)["queries"] == (0, 1) and counts(summary)["greetings"] == (0, 1)


def test_rows_repeated_across_batches_count_once(tmp_path, monkeypatch):
    monkeypatch.setattr(services, "BATCH_RECORDS", 2)
    path = write_json(tmp_path / "sft.json", [alpaca("同一个查询", f"祝福{i % 3}") for i in range(7)])
    summary = import_file(path, progress=False)
    assert summary.records == 7
    assert counts(summary) == {"queries": (1, 0), "greetings": (3, 0), "pairs": (0, 0), "labels": (3, 0)}


# --- Idempotence


def test_reimporting_adds_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(services, "BATCH_RECORDS", 2)  # several batches in one file
    files = [
        write_json(tmp_path / "sft.json", [alpaca(f"q{i}", f"r{i}") for i in range(5)]),
        write_json(tmp_path / "pairs.json", [pair(f"q{i}", f"c{i}", f"x{i}") for i in range(5)]),
        write_lines(tmp_path / "eval.jsonl", [{"query": f"q{i}", "response": f"c{i}", "label": i % 2} for i in range(5)]),
    ]
    for path in files:
        import_file(path, progress=False)
    before = db_counts()
    assert before == {"queries": 5, "greetings": 15, "pairs": 5, "labels": 10}
    again = [counts(import_file(path, progress=False)) for path in files]
    assert again == [
        {"queries": (0, 5), "greetings": (0, 5), "pairs": (0, 0), "labels": (0, 5)},
        {"queries": (0, 5), "greetings": (0, 10), "pairs": (0, 5), "labels": (0, 0)},
        {"queries": (0, 5), "greetings": (0, 5), "pairs": (0, 0), "labels": (0, 5)},
    ]
    assert db_counts() == before


# --- Malformed records


def test_a_malformed_record_rolls_back_the_whole_file(tmp_path, monkeypatch):
    monkeypatch.setattr(services, "BATCH_RECORDS", 2)  # the first batches are written before the bad record
    import_file(write_json(tmp_path / "old.json", [alpaca("旧的", "旧的祝福")]), progress=False)
    before = db_counts()
    records = [alpaca(f"查询{i}", f"祝福{i}") for i in range(6)]
    records[5] = {"instruction": "查询5", "input": ""}
    path = write_json(tmp_path / "sft.json", records)
    with pytest.raises(FormatError) as caught:
        import_file(path, progress=False)
    assert str(caught.value) == f'{path}: index 5, field "output": missing'
    assert db_counts() == before


def test_a_query_too_long_for_the_table_is_a_format_error(tmp_path):
    path = write_lines(tmp_path / "eval.jsonl", [{"query": "q", "response": "r", "label": 1},
                                                 {"query": "长" * 501, "response": "r", "label": 1}])
    with pytest.raises(FormatError) as caught:
        import_file(path, progress=False)
    assert (caught.value.where, caught.value.field) == ("line 2", "query") and "longer than 500" in str(caught.value)
    assert db_counts()["queries"] == 0


def test_skip_bad_reports_every_skipped_record_and_imports_the_rest(tmp_path):
    path = write_lines(tmp_path / "eval.jsonl", [
        {"query": "q1", "response": "r1", "label": 1},
        {"query": "q2", "response": "", "label": 1},
        {"query": "q3", "response": "r3", "label": "maybe"},
        {"query": "长" * 501, "response": "r", "label": 1},
        {"query": "q5", "response": "r5", "label": 0},
    ])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("not json\n")
    summary = import_file(path, skip_bad=True, progress=False)
    assert [(e.where, e.field) for e in summary.skipped] == [
        ("line 2", "response"), ("line 3", "label"), ("line 4", "query"), ("line 6", None)]
    assert summary.records == 2 and db_counts() == {"queries": 2, "greetings": 2, "pairs": 0, "labels": 2}


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(CorpusImportError, match="no such file"):
        import_file(tmp_path / "missing.json", progress=False)
    with pytest.raises(CorpusImportError, match="unknown format"):
        import_file(tmp_path / "missing.json", fmt="csv", progress=False)
    with pytest.raises(CorpusImportError, match="unknown label source"):
        import_file(tmp_path / "missing.json", label_source="crowd", progress=False)
    with pytest.raises(CorpusImportError, match="only http"):
        import_file("ftp://example.org/sft.json", progress=False)


# --- Model invariants


def test_models_own_their_invariants():
    query = Query.objects.create(text="  生日祝福 ")
    assert query.text == "生日祝福" and query.content_hash == Query.hash_for("生日祝福")
    greeting = Greeting.objects.create(query=query, text="快乐！")
    other = Greeting.objects.create(query=query, text="幸福！")
    with transaction.atomic(), pytest.raises(IntegrityError):
        Greeting.objects.create(query=query, text=" 快乐！")  # same (query, text)
    with transaction.atomic(), pytest.raises(IntegrityError):
        Greeting.objects.create(query=query, text="模型写的", source=Greeting.Source.MODEL)  # no checkpoint
    Greeting.objects.create(query=query, text="模型写的", source=Greeting.Source.MODEL, checkpoint_name="ckpt-1")
    with transaction.atomic(), pytest.raises(IntegrityError):
        PreferencePair.objects.bulk_create([PreferencePair(query=query, chosen=greeting, rejected=greeting,
                                                           content_hash="x" * 64)])
    PreferencePair.objects.create(query=query, chosen=greeting, rejected=other)
    Label.objects.create(greeting=greeting, value="good", source_kind="human", source_name="alice")
    with transaction.atomic(), pytest.raises(IntegrityError):
        Label.objects.create(greeting=greeting, value="bad", source_kind="human", source_name="alice")
    assert str(query) == "生日祝福" and "ckpt-1" in str(Greeting.objects.get(source="model"))


# --- The command


def test_command_prints_a_table_per_file(tmp_path):
    sft = write_json(tmp_path / "sft.json", [alpaca("q1", "r1"), alpaca("q2", "r2")])
    pairs = write_json(tmp_path / "pairs.json", [pair("q1", "r1", "bad")])
    out = io.StringIO()
    call_command("import_corpus", str(sft), str(pairs), "--no-progress", stdout=out)
    text = out.getvalue()
    assert f"{sft} (alpaca): 2 records read, 0 skipped" in text
    assert f"{pairs} (pairwise): 1 records read, 0 skipped" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("queries", "greetings", "pairs", "labels"))]
    assert rows == [["queries", "2", "0"], ["greetings", "2", "0"], ["pairs", "0", "0"], ["labels", "2", "0"],
                    ["queries", "0", "1"], ["greetings", "1", "1"], ["pairs", "1", "0"], ["labels", "0", "0"]]


def test_command_format_and_label_source_options(tmp_path):
    path = tmp_path / "labels.data"
    write_lines(path, [{"query": "q", "response": "r", "label": 0}])
    out = io.StringIO()
    call_command("import_corpus", str(path), "--format", "labeled", "--label-source", "judge", "--no-progress", stdout=out)
    assert Label.objects.get().source_kind == "judge" and "(labeled)" in out.getvalue()


def test_command_skip_bad_lists_the_skipped_records(tmp_path):
    path = write_json(tmp_path / "sft.json", [alpaca("q1", "r1"), {"instruction": "q2"}, alpaca("q3", "")])
    out = io.StringIO()
    call_command("import_corpus", str(path), "--skip-bad", "--no-progress", stdout=out)
    text = out.getvalue()
    assert f'skipped: {path}: index 1, field "output": missing' in text
    assert f'skipped: {path}: index 2, field "output": empty' in text
    assert db_counts()["greetings"] == 1


def test_command_error_names_the_place_and_keeps_earlier_files(tmp_path):
    good = write_json(tmp_path / "good.json", [alpaca("q1", "r1")])
    bad = write_json(tmp_path / "bad.json", [alpaca("q2", "r2"), {"instruction": "q3", "output": 3}])
    with pytest.raises(CommandError) as caught:
        call_command("import_corpus", str(good), str(bad), "--no-progress", stdout=io.StringIO())
    message = str(caught.value)
    assert f'{bad}: index 1, field "output": must be a string' in message
    assert f"already imported: {good}" in message
    assert db_counts()["queries"] == 1


def test_command_exits_non_zero_with_the_error_on_stderr(tmp_path):
    env = dict(os.environ, ZHUFU_TESTING="1", ZHUFU_VAR_DIR=str(tmp_path / "var"), DATABASE_URL="")
    result = subprocess.run([sys.executable, "manage.py", "import_corpus", str(tmp_path / "nope.json")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert f"{tmp_path / 'nope.json'}: no such file" in result.stderr
    assert result.stdout == ""


def test_command_needs_something_to_import():
    with pytest.raises(CommandError, match="--starter"):
        call_command("import_corpus")


def test_starter_corpus_imports_both_files(tmp_path, settings):
    settings.STARTER_CORPUS_DIR = tmp_path
    write_lines(tmp_path / "greetings.jsonl", [
        {"query": "q", "response": "good one", "label": 1, "occasion": "生日", "recipient": "妈妈", "tone": "温暖"},
        {"query": "q", "response": "bad one", "label": 0, "occasion": "生日", "recipient": "妈妈", "tone": "温暖",
         "flaw": "cliche"},
    ])
    write_json(tmp_path / "pairs.json", [pair("q", "good one", "bad one")])
    out = io.StringIO()
    call_command("import_corpus", "--starter", "--no-progress", stdout=out)
    assert db_counts() == {"queries": 1, "greetings": 2, "pairs": 1, "labels": 2}
    assert Greeting.objects.get(text="bad one").meta == {"occasion": "生日", "recipient": "妈妈", "tone": "温暖",
                                                         "flaw": "cliche"}
    assert set(Label.objects.values_list("source_name", flat=True)) == {"starter/greetings.jsonl"}
    assert PreferencePair.objects.get().origin == "starter/pairs.json"
    assert [s.new_rows for s in import_starter_corpus()] == [0, 0]


def test_starter_corpus_missing_is_a_clear_error(tmp_path, settings):
    settings.STARTER_CORPUS_DIR = tmp_path
    write_lines(tmp_path / "greetings.jsonl", [{"query": "q", "response": "r", "label": 1}])
    with pytest.raises(CorpusImportError, match="pairs.json missing"):
        import_starter_corpus()
    assert db_counts()["queries"] == 0


# --- URLs


def test_import_by_url_from_a_local_http_server(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    write_json(folder / "sft.json", [alpaca("q1", "r1"), alpaca("q2", "r2")])
    pq.write_table(pa.table({"prompt": [[{"role": "user", "content": "请只生成一条祝福语：q3"}]]}), folder / "grpo")
    with serve_folder(folder) as base:
        summary = import_file(f"{base}/sft.json", progress=True)
        verl = import_file(f"{base}/grpo", progress=False)  # no extension: detected by content
        out = io.StringIO()
        call_command("import_corpus", f"{base}/sft.json", "--no-progress", stdout=out)
    assert (summary.fmt, summary.records, summary.source) == ("alpaca", 2, f"{base}/sft.json")
    assert counts(summary)["labels"] == (2, 0)
    assert set(Label.objects.values_list("source_name", flat=True)) == {"sft.json"}
    assert verl.fmt == "verl" and Query.objects.filter(text="q3").exists()
    assert f"{base}/sft.json (alpaca): 2 records read" in out.getvalue()
    assert db_counts() == {"queries": 3, "greetings": 2, "pairs": 0, "labels": 2}


def test_url_errors_are_clear_and_import_nothing(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    write_json(folder / "bad.json", [alpaca("q1", "r1"), {"instruction": "q2", "output": ""}])
    with serve_folder(folder) as base:
        with pytest.raises(CorpusImportError) as caught:
            import_file(f"{base}/missing.json", progress=False)
        assert str(caught.value) == f"{base}/missing.json: download failed: HTTP 404 File not found"
        with pytest.raises(CommandError, match="HTTP 404"):
            call_command("import_corpus", f"{base}/missing.json", "--no-progress", stdout=io.StringIO())
        with pytest.raises(FormatError) as caught:
            import_file(f"{base}/bad.json", progress=False)
        assert str(caught.value) == f'{base}/bad.json: index 1, field "output": empty'
    with pytest.raises(CorpusImportError, match="download failed"):
        import_file(f"{base}/sft.json", progress=False)  # the server is gone: connection refused
    assert db_counts() == {"queries": 0, "greetings": 0, "pairs": 0, "labels": 0}


def test_a_truncated_download_is_an_error(tmp_path):
    class LyingHandler(QuietHandler):
        def do_GET(self):
            body = json.dumps([alpaca("q", "r")]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LyingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(CorpusImportError, match="download failed"):
            import_file(f"http://127.0.0.1:{server.server_address[1]}/sft.json", progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert db_counts()["queries"] == 0


def test_the_real_starter_corpus_imports_cleanly(settings):
    folder = Path(settings.STARTER_CORPUS_DIR)
    if not all((folder / name).is_file() for name in services.STARTER_FILES):
        if os.environ.get("CI") == "true":
            pytest.fail(f"the starter corpus is missing in {folder}")
        pytest.skip(f"the starter corpus is not written yet in {folder}")
    lines = [json.loads(line) for line in (folder / "greetings.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    pairs = json.loads((folder / "pairs.json").read_text(encoding="utf-8"))
    greetings, pair_summary, *parts = import_starter_corpus()
    assert [summary.skipped for summary in parts] == [[] for _ in parts]
    assert len(parts) == len(list(folder.glob("greetings_*.jsonl")) + list(folder.glob("pairs_*.jsonl")))
    assert (greetings.fmt, greetings.records, greetings.skipped) == ("labeled", len(lines), [])
    assert (pair_summary.fmt, pair_summary.records, pair_summary.skipped) == ("pairwise", len(pairs), [])
    grown = [json.loads(line) for path in folder.glob("greetings_*.jsonl")
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert Label.objects.count() == len({(r["query"].strip(), r["response"].strip()) for r in lines + grown})
    extra_keys = set().union(*(set(r) - {"query", "response", "label"} for r in lines))
    assert extra_keys <= set().union(*(set(g.meta) for g in Greeting.objects.all()))
    triples = {(p["conversations"][-1]["value"].strip(), p["chosen"]["value"].strip(), p["rejected"]["value"].strip())
               for p in pairs}
    flawed = [json.loads(line) for path in folder.glob("pairs_*.jsonl")
              for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    triples |= {(p["query"].strip(), p["chosen"].strip(), p["rejected"].strip()) for p in flawed}
    assert PreferencePair.objects.count() == len({t for t in triples if t[1] != t[2]})
