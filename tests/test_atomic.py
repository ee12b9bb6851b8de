"""scalelab.atomic: a file or folder is published whole or not at all."""

from __future__ import annotations

import pytest

from scalelab.atomic import building_dir, write_json, writing


def test_writing_replaces_whole_and_keeps_old_on_error(tmp_path):
    path = tmp_path / "sub" / "data.jsonl"
    with writing(path) as fh:
        fh.write("one\n")
    assert path.read_text() == "one\n"
    with pytest.raises(RuntimeError), writing(path) as fh:
        fh.write("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "one\n"  # the old content survives, no temporary left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.jsonl"]


def test_building_dir_cache_keeps_first_copy_save_replaces(tmp_path):
    final = tmp_path / "out"
    with building_dir(final) as tmp:
        (tmp / "a").write_text("first")
    with building_dir(final) as tmp:  # a cache: a complete copy exists, this one is dropped
        (tmp / "a").write_text("second")
    assert (final / "a").read_text() == "first"
    with building_dir(final, replace=True) as tmp:  # a save: the new folder takes its place
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    with pytest.raises(ValueError), building_dir(final, replace=True) as tmp:
        (tmp / "c").write_text("broken")
        raise ValueError("failed half-way")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_json_round_trip(tmp_path):
    path = write_json(tmp_path / "x.json", {"a": 1})
    assert path.read_text() == '{"a": 1}'
