"""The HH dialogue format of Bai et al. 2022 (arXiv 2204.05862): turns after "Human:" and "Assistant:" markers.

The text a model continues, the transcripts an export writes and the conversation a labeller sees so
far are all built here, so that they agree to the character.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scalelab.data.comparisons import ASSISTANT  # the marker the HH loader splits transcripts at

if TYPE_CHECKING:
    from scalelab.feedback.db import Turn

HUMAN = "\n\nHuman: "


def prompt_for(context: str, human: str) -> str:
    """The text a model continues: the transcript so far, the new human turn, the assistant marker."""
    return f"{context}{HUMAN}{human}{ASSISTANT}"


def transcript(turns: list[Turn]) -> str:
    """The HH transcript of compared turns: each human turn followed by the chosen response."""
    text = ""
    for t in turns:
        if t.chosen is None:
            break
        text = prompt_for(text, t.human) + " " + (t.response_a if t.chosen == "a" else t.response_b)
    return text
