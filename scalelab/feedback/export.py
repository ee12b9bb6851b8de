"""Comparisons out of the feedback store, for preference-model training.

- ``hh``: lines ``{"chosen": transcript, "rejected": transcript}`` exactly as in the HH-RLHF release
  of Bai et al. 2022 (arXiv 2204.05862), which `scalelab pm train --format hh` reads unchanged.
- ``generic``: lines ``{"prompt", "chosen", "rejected", "margin", "meta"}`` (the generic format of
  `scalelab.data.comparisons`), margin = the labeller's strength 1-4, meta = everything stored.

Which response is *preferred* depends on the mode: in "helpful" mode the labeller picks the better
response; in "red-team" mode the labeller picks the more harmful one, so the other is preferred (as
in the harmlessness data of Bai et al., section 2.2). Pairs whose two responses are equal (after
trimming whitespace) say nothing and are left out (and counted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scalelab.atomic import writing
from scalelab.errors import UserError
from scalelab.feedback.db import FeedbackDB
from scalelab.feedback.hh_format import prompt_for

FORMATS = ("hh", "generic")


@dataclass
class ExportResult:
    path: Path
    format: str
    written: int
    skipped_equal: int

    def summary(self) -> dict:
        return {"path": str(self.path), "format": self.format, "written": self.written,
                "skipped_equal": self.skipped_equal}  # fmt: skip


def preferred_side(row: dict) -> str:
    """'a' or 'b': the response preferred for PM training (helpful: the pick; red-team: the other)."""
    if row["mode"] == "red-team":
        return "b" if row["choice"] == "a" else "a"
    return row["choice"]


def hh_line(row: dict) -> dict:
    prompt = prompt_for(row["context"], row["human"])
    good = preferred_side(row)
    chosen = row["response_a"] if good == "a" else row["response_b"]
    rejected = row["response_b"] if good == "a" else row["response_a"]
    return {"chosen": f"{prompt} {chosen}", "rejected": f"{prompt} {rejected}"}


def generic_line(row: dict) -> dict:
    good = preferred_side(row)
    meta = {k: row[k] for k in ("id", "turn_id", "conversation_id", "labeller", "created_at", "mode", "model_a",
                                "model_b", "settings", "choice", "strength", "comment", "shown_left")}  # fmt: skip
    meta["chosen_model"] = row["model_a"] if good == "a" else row["model_b"]
    meta["rejected_model"] = row["model_b"] if good == "a" else row["model_a"]
    return {"prompt": prompt_for(row["context"], row["human"]),
            "chosen": row["response_a"] if good == "a" else row["response_b"],
            "rejected": row["response_b"] if good == "a" else row["response_a"],
            "margin": float(row["strength"]), "strength": row["strength"], "meta": meta}  # fmt: skip


def export_comparisons(db: FeedbackDB, out: str | Path, format: str = "hh") -> ExportResult:
    """Write every stored comparison to `out` (JSONL, replaced atomically)."""
    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}; use hh or generic")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; give a file name such as feedback.jsonl")
    written = skipped = 0
    with writing(out) as f:
        for row in db.comparisons():
            if row["response_a"].strip() == row["response_b"].strip():
                skipped += 1
                continue
            line = hh_line(row) if format == "hh" else generic_line(row)
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
            written += 1
    return ExportResult(out, format, written, skipped)
