"""Hostile files for the corpus importers (hypothesis): random bytes, broken JSON and JSON Lines,
other encodings, huge fields, wrong types, NUL bytes and lone surrogates.

The readers and the importer may only answer with their own errors (FormatError naming the file,
record and field; CorpusImportError), never crash, and a refused file leaves the tables as they were.
"""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.data.formats import FORMATS, FormatError, iter_records
from webapp.corpus.models import Greeting, Label, PreferencePair, Query
from webapp.corpus.services import CorpusImportError, import_file

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
FIELDS = ["instruction", "input", "output", "conversations", "chosen", "rejected", "from", "value", "role",
          "content", "query", "response", "label", "prompt"]
NASTY_TEXT = ["", " ", "\x00", "\ud800", "\udfff", "\ufeff", "\u200b", "\r\n", "生日快乐", "🎂" * 3, "a" * 5000,
              "请只生成一条祝福语：", '"}]', "\\u0000", "0", "1", "true", "human"]

texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40),
                  st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(allow_nan=False), texts),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), children, max_size=5)),
    max_leaves=12,
)
records = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    st.fixed_dictionaries({"instruction": texts, "input": st.one_of(texts, json_values), "output": texts}),
    st.fixed_dictionaries({"conversations": st.lists(st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", 1]),
                                                                            "value": json_values}), max_size=3),
                           "chosen": json_values, "rejected": json_values}),
    st.fixed_dictionaries({"query": texts, "response": texts,
                           "label": st.one_of(st.sampled_from([0, 1, True, "good", "bad", 2]), json_values)},
                          optional={"note": json_values, "\x00": texts}),
    json_values,
)


@st.composite
def hostile_files(draw) -> tuple[str, bytes]:
    """(file suffix, content): JSON arrays and lines of random records, maybe broken, maybe re-encoded, or junk."""
    kind = draw(st.sampled_from(["array", "lines", "text", "bytes"]))
    if kind == "bytes":
        return draw(st.sampled_from([".json", ".jsonl", ".txt", ".parquet"])), draw(st.binary(max_size=300))
    if kind == "text":
        lines = draw(st.lists(texts, max_size=8))
        return ".txt", "\n".join(lines).encode("utf-8", "surrogatepass")
    rows = draw(st.lists(records, min_size=0, max_size=6))
    dumped = [json.dumps(r, ensure_ascii=draw(st.booleans())) for r in rows]
    text = "[" + ",".join(dumped) + "]" if kind == "array" else "\n".join(dumped)
    damage = draw(st.sampled_from(["none", "none", "truncate", "insert", "encoding"]))
    if damage == "truncate" and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif damage == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\n{", "}\n", ",,", "\x00", "]", "\n\n", "{\"a\":"])) + text[at:]
    suffix = ".json" if kind == "array" else ".jsonl"
    if damage == "encoding":
        return suffix, text.encode(draw(st.sampled_from(["gbk", "utf-16", "utf-8-sig", "latin-1"])), "replace")
    return suffix, text.encode("utf-8", "surrogatepass")


def table_counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Query, Greeting, PreferencePair, Label))


@FUZZ
@given(file=hostile_files(), fmt=st.sampled_from(("auto",) + FORMATS))
def test_iter_records_only_raises_format_errors(tmp_path_factory, file, fmt):
    suffix, content = file
    path = tmp_path_factory.mktemp("fuzz") / f"data{suffix}"
    path.write_bytes(content)
    skipped = []
    try:
        for record in iter_records(path, fmt, on_error=skipped.append):
            assert isinstance(record.query, str) and record.where
    except FormatError as error:
        assert str(error).startswith(str(path)) and error.message
    for error in skipped:
        assert error.where, f"a skipped record must say where it was: {error}"


@pytest.mark.django_db
@FUZZ
@given(file=hostile_files(), fmt=st.sampled_from(("auto",) + FORMATS), skip_bad=st.booleans())
def test_import_file_refuses_cleanly_and_keeps_nothing_of_a_refused_file(tmp_path_factory, file, fmt, skip_bad):
    suffix, content = file
    path = tmp_path_factory.mktemp("fuzz") / f"data{suffix}"
    path.write_bytes(content)
    before = table_counts()
    try:
        summary = import_file(path, fmt, skip_bad=skip_bad, progress=False)
    except (FormatError, CorpusImportError) as error:
        assert str(path) in str(error)
        assert table_counts() == before, "a refused file left rows behind"
        return
    for error in summary.skipped:
        assert isinstance(error, FormatError) and error.where
    # whatever was imported is stored normalised, without NUL bytes or lone surrogates
    for text in Query.objects.values_list("text", flat=True):
        assert "\x00" not in text and text == text.strip()
        text.encode("utf-8")


REGRESSIONS = [
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded: both used to crash the import
    ("nul.jsonl", '{"instruction": "生日\\u0000祝福", "input": "", "output": "快乐"}\n', "alpaca", "instruction"),
    ("surrogate.jsonl", '{"query": "q", "response": "\\ud800", "label": 1}\n', "labeled", "response"),
    ("nul.txt", "生日\x00祝福\n", "queries", None),
]


@pytest.mark.django_db
@pytest.mark.parametrize("name,content,fmt,field", REGRESSIONS)
def test_unstorable_characters_are_refused_with_the_field(tmp_path, name, content, fmt, field):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FormatError) as caught:
        import_file(path, fmt, progress=False)
    assert caught.value.where == "line 1" and caught.value.field == field
    assert "NUL" in caught.value.message or "surrogate" in caught.value.message
    assert table_counts() == (0, 0, 0, 0)
    summary = import_file(path, fmt, skip_bad=True, progress=False)
    assert summary.records == 0 and len(summary.skipped) == 1


@pytest.mark.django_db
def test_extra_fields_with_unstorable_characters_are_refused(tmp_path):
    path = tmp_path / "extra.jsonl"
    path.write_text('{"query": "生日", "response": "快乐", "label": 1, "note": ["x\\u0000", {"k": "\\udc80"}]}\n')
    with pytest.raises(FormatError) as caught:
        import_file(path, "labeled", progress=False)
    assert caught.value.where == "line 1" and caught.value.field == "note"
    assert table_counts() == (0, 0, 0, 0)
