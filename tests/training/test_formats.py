"""training.data.formats: each format from tiny files, detection, and every kind of bad record."""
import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data import containers
from training.data.formats import FORMATS, FormatError, detect_format, iter_records
from training.data.records import LabeledRecord, PairRecord, QueryRecord, SftRecord


def write_json(path, value, indent=2):
    path.write_text(json.dumps(value, ensure_ascii=False, indent=indent), encoding="utf-8")
    return path


def write_lines(path, objects):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects), encoding="utf-8")
    return path


def write_verl(path, prompts, column="prompt"):
    table = pa.table({column: prompts, "data_source": ["test"] * len(prompts)})
    pq.write_table(table, path)
    return path


def user(content):
    return [{"role": "user", "content": content}]


def pair(query, chosen, rejected):
    return {"conversations": [{"from": "human", "value": query}],
            "chosen": {"from": "gpt", "value": chosen}, "rejected": {"from": "gpt", "value": rejected}}


def error_of(path, fmt="auto"):
    with pytest.raises(FormatError) as caught:
        list(iter_records(path, fmt))
    return caught.value


# --- Each format


def test_alpaca_query_joins_instruction_and_non_empty_input(tmp_path):
    path = write_json(tmp_path / "sft.json", [
        {"instruction": "给女生的生日祝福", "input": "", "output": " 生日快乐，亲爱的女孩！ "},
        {"instruction": "写一句祝福", "input": "给老师", "output": "老师辛苦了！"},
        {"instruction": "新年祝福", "output": "新年快乐！"},  # no input key at all
    ])
    assert list(iter_records(path, "alpaca")) == [
        SftRecord("给女生的生日祝福", "生日快乐，亲爱的女孩！", "index 0"),
        SftRecord("写一句祝福\n给老师", "老师辛苦了！", "index 1"),
        SftRecord("新年祝福", "新年快乐！", "index 2"),
    ]


def test_pairwise_takes_the_human_turn_and_both_answers(tmp_path):
    path = write_json(tmp_path / "pairs.json", [pair("生意兴隆的祝福语", "愿您财源滚滚，客似云来！", "生意好。")])
    assert list(iter_records(path, "pairwise")) == [
        PairRecord("生意兴隆的祝福语", "愿您财源滚滚，客似云来！", "生意好。", "index 0")
    ]


def test_flat_pairs_in_json_lines_are_pairwise_too(tmp_path):
    path = tmp_path / "pairs_flawed.jsonl"
    rows = [{"query": "中秋祝福", "chosen": "中秋快乐，月圆人圆。", "rejected": "端午安康。", "flaw": "wrong_occasion"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    assert list(iter_records(path)) == [PairRecord("中秋祝福", "中秋快乐，月圆人圆。", "端午安康。", "line 1")]


def test_pairwise_keeps_a_tie_for_the_consumer_to_judge(tmp_path):
    path = write_json(tmp_path / "pairs.json", [pair("q", "同一句", "同一句")])
    (record,) = iter_records(path)
    assert record.chosen == record.rejected == "同一句"


def test_labeled_accepts_every_label_spelling_and_keeps_extra_keys(tmp_path):
    path = write_lines(tmp_path / "eval.jsonl", [
        {"query": "q1", "response": "r1", "label": 1, "occasion": "生日", "flaw": None},
        {"query": "q2", "response": "r2", "label": 0},
        {"query": "q3", "response": "r3", "label": True},
        {"query": "q4", "response": "r4", "label": False},
        {"query": "q5", "response": "r5", "label": "1"},
        {"query": "q6", "response": "r6", "label": "0"},
    ])
    records = list(iter_records(path, "labeled"))
    assert [r.label for r in records] == [1, 0, 1, 0, 1, 0]
    assert [r.where for r in records] == [f"line {n}" for n in range(1, 7)]
    assert records[0] == LabeledRecord("q1", "r1", 1, "line 1", {"occasion": "生日", "flaw": None})
    assert records[1].extra == {}


def test_queries_strip_lines_and_skip_blank_ones(tmp_path):
    path = tmp_path / "random_query.txt"
    path.write_text("生日祝福语\n\n  七十生日祝福语 \r\n   \n古风新年祝福语", encoding="utf-8")
    assert list(iter_records(path, "queries")) == [
        QueryRecord("生日祝福语", "line 1"), QueryRecord("七十生日祝福语", "line 3"), QueryRecord("古风新年祝福语", "line 5"),
    ]


def test_verl_strips_the_instruction_prefix_with_either_colon(tmp_path):
    path = write_verl(tmp_path / "grpo.parquet", [
        user("请只生成一条祝福语：古风新年祝福语"),
        user("请只生成一条祝福语:三岁宝宝的祝福"),
        [{"role": "system", "content": "你是助手"}, *user("请只生成一条祝福语： 教师节祝福")],
        user("没有前缀的查询"),
    ])
    assert list(iter_records(path)) == [
        QueryRecord("古风新年祝福语", "row 0"), QueryRecord("三岁宝宝的祝福", "row 1"),
        QueryRecord("教师节祝福", "row 2"), QueryRecord("没有前缀的查询", "row 3"),
    ]


def test_a_json_array_is_streamed_correctly_across_chunk_boundaries(tmp_path, monkeypatch):
    items = [{"instruction": f"查询{i}", "input": "", "output": f"祝福{i}" * (i % 7 + 1), "n": 10 ** i}
             for i in range(40)]
    path = write_json(tmp_path / "sft.json", items)
    monkeypatch.setattr(containers, "_CHUNK", 7)  # every element straddles several reads
    records = list(iter_records(path))
    assert [(r.query, r.response) for r in records] == [(i["instruction"], i["output"]) for i in items]
    assert records[-1].where == "index 39"


def test_a_json_array_of_labeled_records_and_json_lines_of_alpaca_both_work(tmp_path):
    array = write_json(tmp_path / "labeled.json", [{"query": "q", "response": "r", "label": 1}])
    lines = write_lines(tmp_path / "sft.jsonl", [{"instruction": "q", "input": "", "output": "r"}])
    assert detect_format(array) == "labeled" and list(iter_records(array))[0].label == 1
    assert detect_format(lines) == "alpaca" and list(iter_records(lines))[0].response == "r"


# --- Detection


def test_detect_format_for_each_kind(tmp_path):
    files = {
        "alpaca": write_json(tmp_path / "a.json", [{"instruction": "q", "input": "", "output": "r"}]),
        "pairwise": write_json(tmp_path / "p.json", [pair("q", "a", "b")]),
        "verl": write_verl(tmp_path / "v.parquet", [user("请只生成一条祝福语：q")]),
        "labeled": write_lines(tmp_path / "evaluate_data.json", [{"query": "q", "response": "r", "label": 0}]),
        "queries": tmp_path / "q.txt",
    }
    files["queries"].write_text("生日祝福语\n", encoding="utf-8")
    assert {fmt: detect_format(path) for fmt, path in files.items()} == {fmt: fmt for fmt in FORMATS}


def test_a_txt_file_is_queries_even_when_a_line_looks_like_json(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("[古风] 新年祝福语\n{生日} 祝福\n", encoding="utf-8")
    assert detect_format(path) == "queries"
    assert [r.query for r in iter_records(path)] == ["[古风] 新年祝福语", "{生日} 祝福"]


def test_parquet_is_recognised_by_content_without_the_extension(tmp_path):
    path = write_verl(tmp_path / "prompts.bin", [user("请只生成一条祝福语：q")])
    assert detect_format(path) == "verl"


@pytest.mark.parametrize("name, content, expected", [
    ("empty.json", "", "empty"),
    ("blank.txt", "  \n\n", "empty"),
    ("empty_array.json", "[]", "array is empty"),
    ("unknown.json", '[{"text": "x", "score": 3}]', "score, text"),
    ("only_query.jsonl", '{"query": "q", "n": 1}', "from its keys (n, query)"),
    ("scalars.json", "[1, 2]", "expected a JSON object"),
    ("pretty.json", '{\n  "query": "q"\n}', "first line is not one complete JSON object"),
    ("words.json", "生日祝福语", "neither a JSON array nor JSON Lines"),
])
def test_detect_format_says_clearly_when_it_cannot_tell(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FormatError) as caught:
        detect_format(path)
    assert expected in str(caught.value)
    assert str(caught.value).startswith(str(path))


# --- Bad records: the right where and field


BAD_ALPACA = [
    ({"instruction": "q", "input": ""}, "output", "missing"),
    ({"instruction": "  ", "input": "", "output": "r"}, "instruction", "empty"),
    ({"instruction": "q", "input": "", "output": 5}, "output", "must be a string"),
    ({"instruction": "q", "input": ["x"], "output": "r"}, "input", "must be a string"),
    ({"instruction": None, "output": "r"}, "instruction", "missing"),
]


@pytest.mark.parametrize("bad, field, message", BAD_ALPACA)
def test_bad_alpaca_record(tmp_path, bad, field, message):
    good = {"instruction": "q", "input": "", "output": "r"}
    path = write_json(tmp_path / "sft.json", [good, good, bad, good])
    error = error_of(path, "alpaca")
    assert (error.where, error.field, error.message.startswith(message)) == ("index 2", field, True)
    assert str(error).startswith(f'{path}: index 2, field "{field}": {message}')


BAD_PAIRS = [
    ({"chosen": {"value": "a"}, "rejected": {"value": "b"}}, "conversations", "missing"),
    ({"conversations": [], "chosen": {"value": "a"}, "rejected": {"value": "b"}}, "conversations", "non-empty"),
    ({"conversations": [{"from": "gpt", "value": "x"}], "chosen": {"value": "a"}, "rejected": {"value": "b"}},
     "conversations", 'no message from "human"'),
    ({"conversations": [{"from": "human", "value": ""}], "chosen": {"value": "a"}, "rejected": {"value": "b"}},
     "conversations[0].value", "empty"),
    ({"conversations": [{"from": "human", "value": "q"}], "rejected": {"value": "b"}}, "chosen", "missing"),
    ({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt"}, "rejected": {"value": "b"}},
     "chosen.value", "missing"),
    ({"conversations": [{"from": "human", "value": "q"}], "chosen": {"value": "a"}, "rejected": 3},
     "rejected", "must be an object"),
]


@pytest.mark.parametrize("bad, field, message", BAD_PAIRS)
def test_bad_pairwise_record(tmp_path, bad, field, message):
    path = write_json(tmp_path / "pairs.json", [pair("q", "a", "b"), bad])
    error = error_of(path, "pairwise")
    assert (error.where, error.field) == ("index 1", field)
    assert message in error.message


@pytest.mark.parametrize("label", [2, -1, "yes", None, [1], 0.5])
def test_bad_label(tmp_path, label):
    lines = [{"query": "q", "response": "r", "label": 1}, {"query": "q", "response": "r2", "label": label}]
    error = error_of(write_lines(tmp_path / "eval.jsonl", lines), "labeled")
    assert (error.where, error.field) == ("line 2", "label")


def test_invalid_json_line_names_its_line(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"query": "q", "response": "r", "label": 1}\n\n{"query": "q2", "response": \n', encoding="utf-8")
    error = error_of(path, "labeled")
    assert error.where == "line 3" and error.field is None and "invalid JSON" in error.message


def test_invalid_json_inside_an_array_names_its_line_even_far_into_the_file(tmp_path, monkeypatch):
    good = '  {"instruction": "q", "input": "", "output": "r"},\n'
    path = tmp_path / "sft.json"
    path.write_text("[\n" + good * 30 + '  {"instruction": "q", "output" "r"}\n]\n', encoding="utf-8")
    monkeypatch.setattr(containers, "_CHUNK", 64)  # the error lies many chunks in
    seen = []
    with pytest.raises(FormatError) as caught:
        for record in iter_records(path, "alpaca"):
            seen.append(record)
    assert len(seen) == 30
    assert caught.value.where == "line 32" and "invalid JSON in element 30" in caught.value.message


@pytest.mark.parametrize("content, message", [
    ('"just a string"', "expected a JSON array or JSON Lines"),
    ("42", "expected a JSON array or JSON Lines"),
    ('[{"instruction": "q", "output": "r"}', "not closed"),
    ('[{"instruction": "q", "output": "r"} {"instruction": "q", "output": "r"}]', "expected ',' or ']'"),
    ('[{"instruction": "q", "output": "r"}] []', "extra content"),
])
def test_wrong_top_level_shape(tmp_path, content, message):
    path = tmp_path / "sft.json"
    path.write_text(content, encoding="utf-8")
    assert message in error_of(path, "alpaca").message


def test_an_element_that_is_not_an_object(tmp_path):
    path = write_json(tmp_path / "sft.json", [{"instruction": "q", "output": "r"}, "just a string"])
    error = error_of(path, "alpaca")
    assert error.where == "index 1" and "expected a JSON object, got a string" in error.message


@pytest.mark.parametrize("name, fmt", [("q.txt", "queries"), ("eval.jsonl", "labeled"), ("sft.json", "alpaca")])
def test_non_utf8_names_its_line(tmp_path, name, fmt):
    lines = {
        "queries": ["生日祝福语", "新年祝福"],
        "labeled": [json.dumps({"query": "q", "response": "r", "label": 1})] * 2,
        "alpaca": ["[", '{"instruction": "q", "output": "r"},'],
    }[fmt]
    tail = b'{"instruction": "q", "output": "r"}]\n' if fmt == "alpaca" else b"\n"
    path = tmp_path / name
    path.write_bytes("\n".join(lines).encode() + b"\n" + "祝福".encode("gbk") + tail)
    error = error_of(path, fmt)
    assert error.where == "line 3" and "not UTF-8" in error.message


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "grpo.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    error = error_of(path)
    assert error.where is None and "unreadable parquet" in error.message


def test_parquet_without_a_prompt_column(tmp_path):
    path = write_verl(tmp_path / "grpo.parquet", ["q"], column="question")
    error = error_of(path, "verl")
    assert error.field == "prompt" and error.message.startswith("missing column")
    assert "question" in error.message and "data_source" in error.message


def test_parquet_row_without_a_user_message(tmp_path):
    path = write_verl(tmp_path / "grpo.parquet", [user("请只生成一条祝福语：q"), [{"role": "system", "content": "x"}],
                                                  user("请只生成一条祝福语：")])
    errors = []
    records = list(iter_records(path, "verl", on_error=errors.append))
    assert [r.query for r in records] == ["q"]
    assert [(e.where, e.field) for e in errors] == [("row 1", "prompt"), ("row 2", "prompt.content")]


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(FormatError, match="unknown format 'csv'"):
        list(iter_records(tmp_path / "x.txt", "csv"))
    with pytest.raises(FormatError, match="cannot read the file"):
        detect_format(tmp_path / "missing.json")


# --- The error object and collecting errors


def test_format_error_message_shape_and_pickling():
    error = FormatError("sft.json", "index 37", "output", "missing")
    assert str(error) == 'sft.json: index 37, field "output": missing'
    assert str(FormatError("sft.json", "line 3", None, "invalid JSON")) == "sft.json: line 3: invalid JSON"
    assert str(FormatError("sft.json", None, None, "the file is empty")) == "sft.json: the file is empty"
    assert FormatError("https://x.org/data/sft.json?raw=1", None, None, "m").name == "sft.json?raw=1"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.where, copy.field, copy.message) == ("sft.json", "index 37", "output", "missing")


def test_name_replaces_the_path_in_messages(tmp_path):
    path = write_json(tmp_path / "tmp123.json", [{"instruction": "q"}])
    with pytest.raises(FormatError) as caught:
        list(iter_records(path, name="https://example.org/sft.json"))
    assert str(caught.value) == 'https://example.org/sft.json: index 0, field "output": missing'


def test_on_error_collects_every_bad_record_and_keeps_the_rest(tmp_path):
    path = write_lines(tmp_path / "eval.jsonl", [
        {"query": "q1", "response": "r1", "label": 1},
        {"query": "q2", "label": 1},
        {"query": "q3", "response": "r3", "label": 7},
        {"query": "q4", "response": "r4", "label": 0},
    ])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("{broken\n")
    errors = []
    records = list(iter_records(path, on_error=errors.append))
    assert [r.query for r in records] == ["q1", "q4"]
    assert [(e.where, e.field) for e in errors] == [("line 2", "response"), ("line 3", "label"), ("line 5", None)]


def test_on_error_does_not_hide_a_broken_array(tmp_path):
    path = tmp_path / "sft.json"
    path.write_text('[{"instruction": "q", "output": "r"}, {"instruction": ', encoding="utf-8")
    errors = []
    with pytest.raises(FormatError, match="invalid JSON"):
        list(iter_records(path, "alpaca", on_error=errors.append))
