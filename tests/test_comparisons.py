"""Tests for scalelab.data.comparisons: the Comparison type, HH/generic loaders, left truncation."""

from __future__ import annotations

import gzip
import json
import sys
import types
from pathlib import Path

import pytest

from scalelab.data.comparisons import (
    Comparison,
    load_comparisons,
    save_comparisons,
    split_hh_pair,
    truncate_left,
)
from scalelab.errors import UserError

HH_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"


def _hh(prefix_turns: str, response: str) -> str:
    return f"{prefix_turns}\n\nAssistant: {response}"


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- Comparison ------------------------------------------------------------------------------------------


def test_comparison_validates_its_fields():
    c = Comparison("p", "good", "bad", margin=2)
    assert c.margin == 2.0 and isinstance(c.margin, float)
    with pytest.raises(ValueError, match="equals"):
        Comparison("p", "same", "same")
    with pytest.raises(ValueError, match="margin"):
        Comparison("p", "a", "b", margin=-1.0)
    with pytest.raises(ValueError, match="margin"):
        Comparison("p", "a", "b", margin=float("nan"))
    with pytest.raises(TypeError):
        Comparison("p", "a", 3)  # type: ignore[arg-type]


# --- split_hh_pair ---------------------------------------------------------------------------------------


def test_split_plain_pair():
    turns = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?"
    parts = split_hh_pair(_hh(turns, "Fine, thanks."), _hh(turns, "Go away."))
    assert parts.prefix == turns + "\n\nAssistant:"
    assert (parts.chosen, parts.rejected, parts.diverged) == ("Fine, thanks.", "Go away.", False)


def test_split_normalises_outer_whitespace_and_crlf():
    chosen = "  \n\nHuman: hi\n\nAssistant:  Hello there.  \n"
    rejected = "Human: hi\r\n\r\nAssistant: Bye."
    parts = split_hh_pair(chosen, rejected)
    assert parts.prefix == "\n\nHuman: hi\n\nAssistant:"
    assert (parts.chosen, parts.rejected) == ("Hello there.", "Bye.")


def test_split_diverged_pair_uses_last_shared_assistant_marker():
    shared = "\n\nHuman: q1\n\nAssistant: a1\n\nHuman: q2"
    chosen = shared + "\n\nAssistant: short answer"
    rejected = shared + "\n\nAssistant: long answer\n\nHuman: q3\n\nAssistant: more"
    parts = split_hh_pair(chosen, rejected)
    assert parts.diverged
    assert parts.prefix == shared + "\n\nAssistant:"
    assert parts.chosen == "short answer"
    assert parts.rejected == "long answer\n\nHuman: q3\n\nAssistant: more"


def test_split_diverged_inside_an_assistant_marker_backs_off_to_a_whole_marker():
    # the transcripts part ways in the middle of "\n\nAssistant:", which must not be cut in half
    chosen = "\n\nHuman: q\n\nAssistant: a\n\nAssistant: b"
    rejected = "\n\nHuman: q\n\nAssistant: a\n\nAssisting\n\nAssistant: c"
    parts = split_hh_pair(chosen, rejected)
    assert parts.prefix == "\n\nHuman: q\n\nAssistant:"
    assert parts.chosen == "a\n\nAssistant: b"


def test_split_keeps_an_empty_response():
    parts = split_hh_pair("\n\nHuman: q\n\nAssistant: ", "\n\nHuman: q\n\nAssistant: an answer")
    assert (parts.chosen, parts.rejected) == ("", "an answer")


@pytest.mark.parametrize(
    ("chosen", "rejected", "reason"),
    [
        ("", "\n\nHuman: q\n\nAssistant: a", "empty chosen transcript"),
        ("\n\nHuman: q\n\nAssistant: a", "   ", "empty rejected transcript"),
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q\n\nAssistant: a", "identical"),
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q only", "no 'Assistant:' turn in the rejected"),
        ("\n\nHuman: q\n\nAssistant: a", "\n\nHuman: q\n\nAssistant:  a \n", "final responses are identical"),
        ("\n\nHuman: x\n\nAssistant: a", "\n\nHuman: y\n\nAssistant: b", "share no Assistant turn"),
    ],
)
def test_split_refuses_pairs_without_a_comparison(chosen, rejected, reason):
    with pytest.raises(UserError, match=reason):
        split_hh_pair(chosen, rejected)


# --- HH loader -------------------------------------------------------------------------------------------


def _hh_lines() -> list[str]:
    good = {"chosen": "\n\nHuman: q\n\nAssistant: yes", "rejected": "\n\nHuman: q\n\nAssistant: no"}
    return [
        json.dumps(good),  # 1 ok
        '{"chosen": "broken',  # 2 bad JSON
        json.dumps({"chosen": good["chosen"]}),  # 3 missing key
        json.dumps({"chosen": good["chosen"], "rejected": 7}),  # 4 not a string
        json.dumps({"chosen": "", "rejected": good["rejected"]}),  # 5 empty transcript
        json.dumps({"chosen": good["chosen"], "rejected": good["chosen"]}),  # 6 chosen == rejected
        json.dumps({"chosen": "\n\nHuman: q", "rejected": "\n\nHuman: r"}),  # 7 no Assistant turn
        "",  # 8 blank: ignored, not counted
        json.dumps([1, 2]),  # 9 not an object
        json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: a\n\nHuman: more\n\nAssistant: b",
                    "rejected": "\n\nHuman: q\n\nAssistant: c"}),  # 10 diverged: kept with a note
    ]


def test_hh_loader_skips_and_reports_malformed_lines(tmp_path):
    comparisons, report = load_comparisons(_write_jsonl(tmp_path / "hh.jsonl", _hh_lines()), "hh")
    assert report.n_loaded == len(comparisons) == 2
    assert [line for line, _ in report.skipped] == [2, 3, 4, 5, 6, 7, 9]
    reasons = dict(report.skipped)
    assert "bad JSON" in reasons[2] and "missing key 'rejected'" in reasons[3]
    assert "must be a string" in reasons[4] and "empty chosen transcript" in reasons[5]
    assert "identical" in reasons[6] and "no 'Assistant:' turn" in reasons[7]
    assert "not an object" in reasons[9]
    assert report.notes == [(10, report.notes[0][1])] and "diverge" in report.notes[0][1]
    assert comparisons[0] == Comparison("\n\nHuman: q\n\nAssistant:", "yes", "no", None, "hh.jsonl",
                                        {"line": 1, "diverged": False})
    assert comparisons[1].meta == {"line": 10, "diverged": True}
    assert "2 comparisons loaded, 7 lines skipped" in report.summary()


def test_hh_loader_strict_names_line_and_reason(tmp_path):
    path = _write_jsonl(tmp_path / "hh.jsonl", _hh_lines())
    with pytest.raises(UserError, match=r"line 2: bad JSON.*strict=False"):
        load_comparisons(path, "hh", strict=True)


def test_hh_loader_diverged_skip_policy_is_never_an_error(tmp_path):
    lines = [_hh_lines()[0], _hh_lines()[9]]
    path = _write_jsonl(tmp_path / "hh.jsonl", lines)
    comparisons, report = load_comparisons(path, strict=True, diverged="skip")
    assert len(comparisons) == 1 and report.skipped[0][0] == 2 and "diverge" in report.skipped[0][1]
    with pytest.raises(UserError, match="valid: split, skip"):
        load_comparisons(path, diverged="drop")


def test_hh_loader_reads_gzip_and_detects_format(tmp_path):
    path = tmp_path / "hh.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(_hh_lines()[0] + "\n")
    comparisons, report = load_comparisons(path)
    assert report.format == "hh" and comparisons[0].chosen == "yes"


# --- generic loader --------------------------------------------------------------------------------------


def test_generic_jsonl_with_margin_source_and_extra_keys(tmp_path):
    lines = [
        json.dumps({"prompt": "P", "chosen": "A", "rejected": "B", "margin": 1.5, "source": "web",
                    "topic": "x"}),
        json.dumps({"prompt": "", "chosen": "A", "rejected": "B"}),
        json.dumps({"prompt": "P", "chosen": "A", "rejected": "B", "margin": -2}),
        json.dumps({"prompt": "P", "chosen": "", "rejected": "B"}),
        json.dumps({"prompt": "P", "chosen": "A", "rejected": "B", "margin": "big"}),
    ]
    comparisons, report = load_comparisons(_write_jsonl(tmp_path / "g.jsonl", lines))
    assert report.format == "generic"
    assert comparisons[0] == Comparison("P", "A", "B", 1.5, "web", {"line": 1, "topic": "x"})
    assert (comparisons[1].prompt, comparisons[1].margin, comparisons[1].source) == ("", None, "g.jsonl")
    assert [line for line, _ in report.skipped] == [3, 4, 5]
    assert "reversed" in report.skipped[0][1] and "empty 'chosen'" in report.skipped[1][1]


def test_generic_keeps_a_response_of_blanks(tmp_path):
    line = json.dumps({"prompt": "P", "chosen": "A", "rejected": "   "})
    comparisons, report = load_comparisons(_write_jsonl(tmp_path / "g.jsonl", [line]))
    assert comparisons[0].rejected == "   " and not report.skipped


def test_generic_csv_with_quoted_newlines_and_line_numbers(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        'prompt,chosen,rejected,margin\n'
        'P1,"line one\nline two",B1,\n'  # a record over two lines (lines 2-3)
        'P2,A2,B2,0.5\n'  # line 4
        'P3,A3,A3,\n'  # line 5: chosen == rejected
        'P4,A4,B4,oops\n',  # line 6: bad margin
        encoding="utf-8",
    )
    comparisons, report = load_comparisons(path)
    assert [c.chosen for c in comparisons] == ["line one\nline two", "A2"]
    assert comparisons[0].margin is None and comparisons[1].margin == 0.5
    assert [line for line, _ in report.skipped] == [5, 6]
    assert "not a number" in report.skipped[1][1]


def test_skipped_lines_are_explained_with_line_numbers(tmp_path, caplog):
    good = json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"})
    lines = [good, "{not json", json.dumps({"prompt": "q", "chosen": "a"})] + [good] * 3 + ["[1]"] * 6
    path = _write_jsonl(tmp_path / "g.jsonl", lines)
    with caplog.at_level("WARNING", logger="scalelab.data.comparisons"):
        comparisons, report = load_comparisons(path)
    assert len(comparisons) == 4 and report.n_skipped == 8
    text = report.explain(limit=3)
    assert "line 2: bad JSON" in text and "line 3: missing key 'rejected'" in text and "line 7: " in text
    assert "line 8" not in text and "and 5 more" in text and "skipped 8 of 12 lines" in text
    assert [r.getMessage() for r in caplog.records] == [report.explain()]  # the first reasons are printed
    caplog.clear()
    with caplog.at_level("WARNING", logger="scalelab.data.comparisons"):
        load_comparisons(_write_jsonl(tmp_path / "ok.jsonl", [good]))
    assert not caplog.records  # nothing to say about a clean file


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_invalid_utf8_lines_are_skipped_with_a_reason_or_refused_when_strict(tmp_path, suffix):
    if suffix == ".jsonl":
        rows = [json.dumps({"prompt": p, "chosen": "a", "rejected": "b"}).encode() for p in ("q1", "q2", "q3")]
    else:
        rows = [b"prompt,chosen,rejected", b"q1,a,b", b"q2,a,b", b"q3,a,b"]
    rows[1] = rows[1].replace(b"a", b"a\xff\xfe", 1)  # invalid UTF-8 on line 2
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"\n".join(rows) + b"\n")
    comparisons, report = load_comparisons(path)
    assert len(comparisons) == 2 and report.skipped == [(2, "line is not valid UTF-8")]
    assert all("\udcff" not in c.chosen for c in comparisons)
    with pytest.raises(UserError, match="line 2: line is not valid UTF-8"):
        load_comparisons(path, strict=True)


def test_csv_without_required_columns_is_refused(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("question,answer\nq,a\n", encoding="utf-8")
    with pytest.raises(UserError, match="lack"):
        load_comparisons(path)


def test_format_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="valid formats are hh, generic, auto"):
        load_comparisons(tmp_path / "x.jsonl", format="parquet")
    with pytest.raises(UserError, match="no such file"):
        load_comparisons(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("hi", encoding="utf-8")
    with pytest.raises(UserError, match="unknown file type"):
        load_comparisons(tmp_path / "x.txt")
    path = _write_jsonl(tmp_path / "odd.jsonl", [json.dumps({"text": "hi"})])
    with pytest.raises(UserError, match="cannot detect the format"):
        load_comparisons(path)


def test_save_and_load_round_trip(tmp_path):
    originals = [Comparison("P", "A", "B", 0.25, "pmp:shuffle", {"kind": "shuffle", "doc": 3}),
                 Comparison("", "x", "y")]
    assert save_comparisons(originals, tmp_path / "out.jsonl.gz") == 2
    loaded, report = load_comparisons(tmp_path / "out.jsonl.gz", strict=True)
    assert report.n_skipped == 0
    meta = {"line": 1, "kind": "shuffle", "doc": 3}
    assert loaded[0] == Comparison("P", "A", "B", 0.25, "pmp:shuffle", meta)
    assert (loaded[1].prompt, loaded[1].chosen, loaded[1].source) == ("", "x", "out.jsonl.gz")


# --- Hugging Face datasets -------------------------------------------------------------------------------


def test_missing_datasets_package_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    (tmp_path / "ds").mkdir()
    with pytest.raises(UserError, match=r"pip install scalelab\[hf\]"):
        load_comparisons(tmp_path / "ds")


def test_hub_name_goes_to_load_dataset_with_split(monkeypatch):
    calls = []

    class FakeDataset(list):
        column_names = ["prompt", "chosen", "rejected"]

    def load_dataset(name, split=None):
        calls.append((name, split))
        return FakeDataset([{"prompt": "P", "chosen": "A", "rejected": "B"}, {"prompt": "P", "chosen": "A"}])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    comparisons, report = load_comparisons("someorg/prefs", split="test")
    assert calls == [("someorg/prefs", "test")]
    assert len(comparisons) == 1 and report.unit == "row"
    assert report.skipped == [(2, "missing key 'rejected'")]


def test_local_hf_dataset_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"chosen": ["\n\nHuman: q\n\nAssistant: yes"] * 2,
            "rejected": ["\n\nHuman: q\n\nAssistant: no", ""]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "one"))
    comparisons, report = load_comparisons(tmp_path / "one")
    assert report.format == "hh" and len(comparisons) == 1 and report.skipped[0][0] == 2
    generic = datasets.Dataset.from_dict({"prompt": ["P"], "chosen": ["A"], "rejected": ["B"]})
    datasets.DatasetDict({"train": generic, "test": generic}).save_to_disk(str(tmp_path / "two"))
    with pytest.raises(UserError, match="pass split="):
        load_comparisons(tmp_path / "two")
    comparisons, _ = load_comparisons(tmp_path / "two", split="test")
    assert comparisons[0].chosen == "A"


# --- truncate_left ---------------------------------------------------------------------------------------


def test_truncate_left_keeps_the_response_and_the_end_of_the_prefix():
    t = truncate_left([1, 2, 3, 4, 5], [8, 9], 4)
    assert t.ids == [4, 5, 8, 9] and t.n_prefix == 2 and t.n_prefix_dropped == 3
    assert t.truncated and not t.response_truncated
    fits = truncate_left([1, 2], [8, 9], 4)
    assert fits.ids == [1, 2, 8, 9] and not fits.truncated


def test_truncate_left_cuts_an_over_long_response_at_its_end():
    t = truncate_left([1, 2], [7, 8, 9, 10], 3)
    assert t.ids == [7, 8, 9] and t.n_prefix == 0
    assert (t.n_prefix_dropped, t.n_response_dropped, t.response_truncated) == (2, 1, True)
    with pytest.raises(UserError, match="max_tokens"):
        truncate_left([1], [2], 0)


# --- the real HH-RLHF sample -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hh_real():
    if not HH_FILE.is_file():
        pytest.skip(f"{HH_FILE} not present")
    comparisons, report = load_comparisons(HH_FILE, strict=True)
    return {c.meta["line"]: c for c in comparisons}, report


def test_real_hh_file_parses_every_pair(hh_real):
    by_line, report = hh_real
    assert report.format == "hh" and report.n_loaded == 2312 and report.n_skipped == 0
    assert sorted(by_line) == list(range(1, 2313))
    notes = dict(report.notes)
    assert [line for line, note in report.notes if "empty chosen response" in note] == [87, 517, 926, 1104]
    assert [line for line, note in report.notes if "diverge" in note] == [1255, 1689, 1951, 1953, 2037]
    assert len(notes) == 9


def test_real_hh_prefixes_and_responses_rebuild_the_transcripts(hh_real):
    by_line, _ = hh_real
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as f:
        for line_no, text in enumerate(f, start=1):
            row, c = json.loads(text), by_line[line_no]
            assert c.prompt.startswith("\n\nHuman:") and c.prompt.endswith("\n\nAssistant:")
            for transcript, response in ((row["chosen"], c.chosen), (row["rejected"], c.rejected)):
                assert transcript.startswith(c.prompt) and transcript.rstrip().endswith(response)
            if not c.meta["diverged"]:
                assert row["chosen"][len(c.prompt):].strip() == c.chosen


def test_real_hh_hand_read_examples(hh_real):
    by_line, _ = hh_real
    first = by_line[1]
    assert first.prompt.startswith("\n\nHuman: what are some pranks with a pen i can do?\n\nAssistant: Are")
    assert first.prompt.endswith("\n\nHuman: okay some of these do not have anything to do with pens"
                                 "\n\nAssistant:")
    assert first.chosen == ("No, sorry!  All of these involve a pen, the point is that you can get funny "
                            "results by doing pranks with pens.")
    assert first.rejected.startswith("There are lots of funny things you can do with pens")
    assert first.rejected.endswith("It’s really funny.")
    second = by_line[2]
    assert second.prompt.count("\n\nHuman:") == 3
    assert second.chosen.startswith("Sounds like alcohol is something you use to calm down when you feel")
    assert second.rejected == ("I’m glad that you’re enjoying your alcohol intake. Can I ask about how you "
                               "feel when you don’t drink alcohol?")
    empty = by_line[87]
    assert empty.prompt.endswith("\n\nHuman: Sorry, can you tell me address again?\n\nAssistant:")
    assert (empty.chosen, empty.rejected) == ("", "Sure, the address is ...")
    diverged = by_line[1255]
    assert diverged.prompt.endswith("\n\nHuman: Isn't that drag kings?\n\nAssistant:")
    assert diverged.chosen.startswith("No. Men who impersonate stereotypical women are called drag kings.")
    assert "Human: Then how do they come to be called drag kings" in diverged.chosen
    assert diverged.rejected == ("A drag king is the opposite of a drag queen, like a male who acts like a "
                                 "stereotypical woman.")
    last = by_line[2312]
    assert last.prompt.endswith("\n\nHuman: Where is the human trade message board\n\nAssistant:")
    assert (last.chosen, last.rejected) == ("I don’t know where the human trade message board is.",
                                           "It’s private, I can only show you if you join.")
