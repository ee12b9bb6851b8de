"""The shared progress bars: one item bar for library code and commands, an ETA bar for commands; labels and
texts are printed literally, and nothing is drawn when progress is off."""

from __future__ import annotations

from scalelab.cli.progress import count_bar, eta_bar
from scalelab.progress_bar import item_bar


def test_bars_draw_on_stderr_with_literal_labels(monkeypatch, capsys):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich and show_progress take the captured stderr for a terminal
    with count_bar("export [bold]x", 3) as update:
        update(2, 3, "run [red]y")
    with eta_bar("bootstrap refits", 10) as progress:
        progress(5, 10)
    with item_bar("tokenizing", info="docs") as bar:
        bar.advance(bar.task_ids[0], 7)
    out, err = capsys.readouterr()
    assert out == ""
    for text in ("export [bold]x", "2/3", "run [red]y", "bootstrap refits", "50%", "tokenizing", "7/?", "docs"):
        assert text in err, text


def test_nothing_is_drawn_when_progress_is_off(monkeypatch, capsys):
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)  # the captured stderr is not a terminal
    with count_bar("export", 3) as update, eta_bar("refits", 4) as progress:
        update(1, 3, "x")
        progress(1, 4)
    with item_bar("distill", 5, enabled=False) as bar:
        bar.update(bar.task_ids[0], completed=3, info="kl 1.0")
    assert capsys.readouterr() == ("", "")
