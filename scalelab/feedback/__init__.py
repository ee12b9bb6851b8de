"""Human feedback: people compare model responses in a browser; the comparisons train PMs and rate models.

Bai et al. 2022 (arXiv 2204.05862, section 2.2) collected their data with an interface in which a
person talks with the assistant and, at every turn, picks the better of two responses on a
strength scale; the chosen response continues the conversation. The same comparisons train
preference models and rate models against each other (Elo). This package is that interface:

- `db`: the SQLite store (`<workdir>/feedback.db`, WAL, one transaction per comparison);
- `schema`: its tables and connection settings; `hh_format`: the Human/Assistant text of a conversation;
- `responder`: two responses per turn, sampled with the KV cache from one or two models;
- `app`: the FastAPI application (pages with CSRF-protected forms, a Bearer-token JSON API);
- `security`: body size limit, rate limits, CSRF tokens, security headers;
- `export`: HH-RLHF and generic JSONL for `scalelab pm train`;
- `elo`: Bradley-Terry / Elo ratings with bootstrap intervals and the win-rate matrix.

The web parts need the optional extra: ``pip install 'scalelab[feedback]'``.
"""

from scalelab.feedback.db import FeedbackDB
from scalelab.feedback.elo import EloResult, elo_ratings, outcomes
from scalelab.feedback.export import export_comparisons

__all__ = ["EloResult", "FeedbackDB", "elo_ratings", "export_comparisons", "outcomes"]
