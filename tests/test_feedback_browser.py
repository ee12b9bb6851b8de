"""End to end in a real headless browser: sign in, hold a 3-turn conversation, compare, export.

Chromium from the system packages (`apt-get install chromium`), driven by Playwright for Python
pointed at that executable (no Playwright browser download). Skips cleanly without either.
Set SCALELAB_FEEDBACK_SCREENSHOTS=DIR to keep the desktop and phone screenshots (docs/feedback/).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the feedback extra is not installed")
pytest.importorskip("uvicorn", reason="the feedback extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test-browser extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no system chromium (apt-get install chromium)", allow_module_level=True)

from scalelab.feedback.app import Settings, create_app  # noqa: E402
from scalelab.feedback.db import FeedbackDB  # noqa: E402
from scalelab.feedback.export import export_comparisons  # noqa: E402
from scalelab.feedback.responder import Responder, load_models  # noqa: E402
from scalelab.feedback.server import serve_in_thread  # noqa: E402
from tests.test_feedback import make_model_run  # noqa: E402

DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
TURNS = ["Hi! Can you help me plan a picnic?", "What food should I bring for <b>four</b> people?",
         "And what if it rains?"]  # fmt: skip


@pytest.fixture
def server(tmp_path):
    for i, name in enumerate(("tiny-a", "tiny-b")):
        make_model_run(tmp_path, name, seed=i)
    responder = Responder(load_models(["tiny-a", "tiny-b"], tmp_path), max_new_tokens=24, rng=random.Random(0))
    db = FeedbackDB.in_workdir(tmp_path)
    token = db.add_labeller("browser")
    with serve_in_thread(create_app(db, responder, Settings())) as url:
        yield url, token, db, tmp_path


def _shots_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("SCALELAB_FEEDBACK_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.slow
def test_browser_three_turns_compared_and_exported(server):
    url, token, db, workdir = server
    shots = _shots_dir(workdir)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport=DESKTOP)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        assert page.url.endswith("/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_selector("#human")
        for k, human in enumerate(TURNS):
            page.fill("#human", human)
            if k == 0:
                page.click("#send")
            else:
                page.press("#human", "Control+Enter")  # the keyboard shortcut
            page.wait_for_selector("#response-a")
            assert page.locator(".pair .resp").count() == 2
            if k == 1:
                page.screenshot(path=str(shots / "desktop.png"), full_page=True)
                page.set_viewport_size(PHONE)
                page.screenshot(path=str(shots / "phone.png"), full_page=True)
                fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
                assert fits, "the comparison page scrolls sideways at phone width"
                page.set_viewport_size(DESKTOP)
                page.fill("#comment", "both are odd")
                page.press("#comment", "Escape")
            if k == 2:
                page.click("button[value=b2]")
            else:
                page.keyboard.press("8" if k == 0 else "3")  # B much better, A slightly better
            page.wait_for_selector("#human")
        # the conversation so far: three human turns, three chosen responses, the <b> shown as text
        assert page.locator("#conversation .human").count() == 3
        assert page.locator("#conversation .assistant").count() == 3
        assert "<b>four</b>" in page.locator("#conversation").inner_text()
        assert page.locator("#conversation b").count() == 0
        assert not errors, errors  # no CSP violation or script error
        browser.close()
    rows = db.comparisons()
    assert [(r["choice"], r["strength"]) for r in rows] == [("b", 4), ("a", 2), ("b", 2)]
    assert [r["human"] for r in rows] == TURNS
    assert rows[1]["comment"] == "both are odd"
    assert len({r["conversation_id"] for r in rows}) == 1
    out = export_comparisons(db, workdir / "hh.jsonl", "hh")
    assert out.written + out.skipped_equal == 3 and out.written >= 2
    from scalelab.data.comparisons import load_comparisons

    loaded, _ = load_comparisons(workdir / "hh.jsonl", format="hh", strict=True)
    assert len(loaded) == out.written
    assert loaded[-1].prompt.count("Human:") == 3 or out.skipped_equal
