"""A training stream with a repeated subset: Hernandez et al. 2022 (arXiv 2205.10487), section 2.

A run of D tokens (D = steps x grad_accum x world x batch_size x block_size) takes a fraction `f`
of its tokens from a random subset of the train split of size f D / R, seen R times, and the
remaining (1 - f) D tokens from data seen exactly once. Test loss is measured on data that holds
none of the repeated subset (the val/test splits, and the train windows this run never uses).

The unit of the schedule is a *window* of block_size + 1 tokens (T inputs, T targets). The run
has W = D / T window slots.

- `chunk`: the subset holds exactly S = round(f D / R) target tokens (half up, at most D / R), so
  the realised share of repeated tokens R S / D is f to within R / (2 D), whatever R: k = S // T
  whole chunks of T + 1 tokens, drawn at random from the train split cut into disjoint chunks,
  plus a *tail* of r = S - k T tokens (the head of one more chunk). The tail is served R times in
  *mixed* windows: its r + 1 tokens, then T - r fresh unique tokens (a new unique chunk's head
  each time). Rounding the subset to whole windows instead made the realised share drift with R
  (f = 0.5 gave 0.427 at R = 1024 in a 300-step run). No raw token position is shared between
  the subset and a unique window.
- `document`: the subset is sized in windows, k_target = round(f W / R) (half up, at most
  floor(W / R)). Documents are taken in a seeded random order until, laid end to end and cut into
  windows of T + 1 tokens that overlap by one token (so every subset token but the first is a
  target exactly once per pass), they fill at least k_target windows. The subset is therefore
  whole documents and overshoots the budget by less than one document; its last window is
  padded: inputs 0, targets -1 (ignored by the loss). Since one document can be long next to
  the budget, a subset over k_target (1 + max_overshoot) windows (default +10%) is refused with
  a UserError rather than silently repeating more than f. The unique windows are disjoint T + 1
  chunks of the remaining documents laid end to end, so "unique" never touches the subset.

The schedule is the U unique windows (once each), the k whole subset windows (R times each) and
(chunk) the R mixed windows, shuffled together with the seed; `next()` walks it. Micro-batch m of
the run is the slice [m world B, (m + 1) world B) of the schedule, of which rank r takes its r-th
block of B rows, so the ranks are disjoint and together cover the schedule. `state_dict()` is
the position: a resumed run sees exactly the remaining sequence. `accounting()` reports the
exact counts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from scalelab.atomic import writing
from scalelab.errors import UserError

GRANULARITIES = ("document", "chunk")
_SUBSET, _UNIQUE, _SCHEDULE, _EVAL = 1, 2, 3, 4  # seed streams: changing one leaves the others intact


class _Stream:
    """Segments [start, start + length) of the token array laid end to end, read by virtual position."""

    def __init__(self, tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
        keep = lengths > 0
        self.tokens = tokens
        self.starts = np.asarray(starts, dtype=np.int64)[keep]
        self.offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64)[keep])])
        self.size = int(self.offsets[-1])

    def read(self, vstart: int, length: int) -> np.ndarray:
        """The tokens at virtual positions [vstart, vstart + length), fewer at the end of the stream."""
        end = min(vstart + length, self.size)
        i = int(np.searchsorted(self.offsets, vstart, side="right")) - 1
        pieces, pos = [], vstart
        while pos < end:
            take = min(end, int(self.offsets[i + 1])) - pos
            a = int(self.starts[i]) + pos - int(self.offsets[i])
            pieces.append(np.asarray(self.tokens[a : a + take]))
            pos, i = pos + take, i + 1
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first index, length) of every run of True in a boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    first = np.flatnonzero(edges == 1)
    return first, np.flatnonzero(edges == -1) - first


class RepetitionMixer:
    """Sampler (same interface as `SequentialEpochs`) for a run with a repeated subset.

    tokens: the train split (1-D); doc_starts: start offset of each document (`Shards.doc_starts`),
    needed for granularity='document'; steps: optimizer steps of the run; fraction: f, the share
    of training tokens that come from the repeated subset; repeats: R, epochs on the subset;
    max_overshoot: (document granularity) the largest relative excess of the subset over its budget.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        doc_starts: np.ndarray | None,
        block_size: int,
        batch_size: int,
        steps: int,
        fraction: float,
        repeats: int,
        *,
        granularity: str = "document",
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        grad_accum: int = 1,
        max_overshoot: float = 0.1,
    ):
        self._check_args(block_size, batch_size, steps, fraction, repeats, granularity, rank, world, grad_accum)
        self.tokens, self.block, self.batch = tokens, block_size, batch_size
        self.steps, self.fraction, self.repeats, self.granularity = steps, float(fraction), int(repeats), granularity
        self.seed, self.rank, self.world, self.grad_accum = seed, rank, world, grad_accum
        self.max_overshoot = max_overshoot
        self.micro_batches = steps * grad_accum
        self.windows_total = self.micro_batches * world * batch_size  # W
        self.k_target = min(math.floor(self.fraction * self.windows_total / self.repeats + 0.5),
                            self.windows_total // self.repeats)  # fmt: skip
        D = self.windows_total * block_size
        self.subset_target_tokens = min(math.floor(self.fraction * D / self.repeats + 0.5), D // self.repeats)  # S
        whole = self.k_target if granularity == "document" else self.subset_target_tokens // block_size
        if self.fraction > 0 and whole == 0:
            raise UserError(
                f"repetition fraction={fraction} with repeats={repeats} gives a subset of "
                f"{self.fraction * D / self.repeats:.3g} tokens, less than one window of {block_size}; "
                "raise the fraction, lower repeats or train for more steps"
            )
        self.subset_documents: np.ndarray | None = None
        self.tail = 0  # subset tokens beyond whole windows (chunk granularity): served in mixed windows
        if granularity == "chunk":
            self._build_chunks()
        else:
            self._build_documents(doc_starts)
        self.n_mixed = self.repeats if self.tail else 0
        self.n_unique = self.windows_total - self.k * self.repeats - self.n_mixed  # U
        self._check_unique_supply()
        U, M = self.n_unique, self.n_mixed
        self._unique_vstarts = self._unique_perm[:U] * self._unique_stride
        self._mixed_vstarts = self._unique_perm[U : U + M] * self._unique_stride
        self._heldout_vstarts = self._unique_perm[U + M :] * self._unique_stride
        dtype = np.int32 if self.windows_total < 2**31 else np.int64
        sched = np.concatenate([np.arange(U, dtype=dtype),
                                np.tile(np.arange(self.k, dtype=dtype), self.repeats) + dtype(U),
                                np.arange(M, dtype=dtype) + dtype(U + self.k)])  # fmt: skip
        # ids: < U unique; < U + k whole subset windows; else mixed (the subset's tail, then unique tokens)
        self.schedule = np.random.default_rng([seed, _SCHEDULE]).permutation(sched)
        self.pos = 0  # micro-batches consumed

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _check_args(block_size, batch_size, steps, fraction, repeats, granularity, rank, world, grad_accum) -> None:
        if granularity not in GRANULARITIES:
            raise UserError(f"repetition granularity={granularity!r}: use one of {GRANULARITIES}")
        if not 0.0 <= fraction <= 1.0:
            raise UserError(f"repetition fraction={fraction} must lie in [0, 1] (the share of repeated tokens)")
        if int(repeats) != repeats or repeats < 1:
            raise UserError(f"repeats={repeats} must be a whole number >= 1 (epochs on the repeated subset)")
        for name, v in (("block_size", block_size), ("batch_size", batch_size), ("steps", steps),
                        ("world", world), ("grad_accum", grad_accum)):  # fmt: skip
            if v < 1:
                raise UserError(f"{name}={v} must be >= 1")
        if not 0 <= rank < world:
            raise UserError(f"rank={rank} must lie in [0, world={world})")

    def _build_chunks(self) -> None:
        T1 = self.block + 1
        n_chunks = self.tokens.size // T1
        stream = _Stream(self.tokens, np.array([0]), np.array([n_chunks * T1]))
        perm = np.random.default_rng([self.seed, _SUBSET]).permutation(n_chunks)
        self.k, self.tail = divmod(self.subset_target_tokens, self.block)
        if self.k * self.repeats + self.repeats > self.windows_total and self.tail:
            self.tail = 0  # f close to 1: no room for the mixed windows; the subset is whole windows
        if self.k + (self.tail > 0) > n_chunks:
            raise UserError(
                f"the repeated subset needs {self.k} chunks of {T1} tokens but the train split "
                f"({self.tokens.size} tokens) holds {n_chunks}; use more data, fewer steps or a smaller fraction"
            )
        self._subset_stream, self._unique_stream = stream, stream
        self._subset_vstarts = perm[: self.k].astype(np.int64) * T1
        self._subset_valid = np.full(self.k, T1, dtype=np.int64)
        self._tail_vstart = int(perm[self.k]) * T1 if self.tail else -1
        self.subset_raw_tokens = self.k * T1 + (self.tail + 1 if self.tail else 0)
        self.subset_tokens = self.k * self.block + self.tail  # targets per pass
        used = self.k + (self.tail > 0)
        self._unique_perm, self._unique_stride = perm[used:].astype(np.int64), T1

    def _build_documents(self, doc_starts: np.ndarray | None) -> None:
        T, T1, n = self.block, self.block + 1, self.tokens.size
        starts = self._check_doc_starts(doc_starts, n)
        lengths = np.diff(np.append(starts, n))
        perm = np.random.default_rng([self.seed, _SUBSET]).permutation(starts.size)
        # subset windows after taking the first j documents of perm: ceil((S_j - 1) / T)
        filled = np.ceil((np.cumsum(lengths[perm]) - 1) / T).astype(np.int64)
        n_sel = 0 if self.k_target == 0 else int(np.searchsorted(filled, self.k_target, side="left")) + 1
        if n_sel > starts.size:
            raise UserError(
                f"the repeated subset needs {self.k_target} windows of {T1} tokens but all {starts.size} documents "
                f"of the train split ({n} tokens) fill {int(filled[-1])}; use more data, fewer steps or a smaller "
                "fraction"
            )
        sel = perm[:n_sel]
        self._check_overshoot(int(filled[n_sel - 1]) if n_sel else 0, lengths[sel])
        self.subset_documents = sel
        self._subset_stream = _Stream(self.tokens, starts[sel], lengths[sel])
        S = self._subset_stream.size
        self.k = int(filled[n_sel - 1]) if n_sel else 0
        self._subset_vstarts = np.arange(self.k, dtype=np.int64) * T
        self._subset_valid = np.minimum(S - self._subset_vstarts, T1)
        self.subset_raw_tokens = S
        self.subset_tokens = max(S - 1, 0)
        keep = np.ones(starts.size, dtype=bool)
        keep[sel] = False
        first, count = _runs(keep)  # runs of kept documents are contiguous in the token array
        cum = np.concatenate([[0], np.cumsum(lengths)])
        run_len = cum[first + count] - cum[first]
        self._unique_stream = _Stream(self.tokens, starts[first], run_len)
        n_unique = self._unique_stream.size // T1
        self._unique_perm = np.random.default_rng([self.seed, _UNIQUE]).permutation(n_unique).astype(np.int64)
        self._unique_stride = T1

    def _check_overshoot(self, k: int, sel_lengths: np.ndarray) -> None:
        """Whole documents overshoot the budget by less than one document, which can be a lot of it."""
        if self.k_target and k > self.k_target * (1 + self.max_overshoot):
            raise UserError(
                f"granularity='document': the {sel_lengths.size} random document(s) that reach the budget of "
                f"{self.k_target} windows fill {k} ({k / self.k_target - 1:+.0%}; the last holds "
                f"{int(sel_lengths[-1])} tokens): {k * self.repeats} repeated windows instead of about "
                f"{self.fraction * self.windows_total:.0f} (f={self.fraction} of {self.windows_total}); "
                "use granularity='chunk', a larger subset (more steps, a larger fraction or fewer repeats) "
                f"or raise max_overshoot (now {self.max_overshoot})"
            )

    @staticmethod
    def _check_doc_starts(doc_starts: np.ndarray | None, n: int) -> np.ndarray:
        if doc_starts is None:
            raise UserError("granularity='document' needs the document offsets (Shards.doc_starts('train')); "
                            "pass them or use granularity='chunk'")  # fmt: skip
        starts = np.asarray(doc_starts, dtype=np.int64)
        if starts.ndim != 1 or starts.size == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= n:
            raise UserError(
                f"document offsets must be strictly increasing, start at 0 and lie below the {n} train tokens; "
                "pass Shards.doc_starts('train') for the same split as the tokens"
            )
        return starts

    def _check_unique_supply(self) -> None:
        T = self.block
        if self.n_unique < 0:
            raise UserError(
                f"the repeated subset ({self.k} windows x {self.repeats} repeats = {self.k * self.repeats} windows) "
                f"exceeds the run's {self.windows_total} windows, because whole documents overshoot the budget; "
                "use granularity='chunk', a smaller fraction or more steps"
            )
        if self._unique_perm.size < self.n_unique + self.n_mixed:
            need = self.n_unique * T + self.subset_tokens
            raise UserError(
                f"the train split holds {self.tokens.size} tokens: after the repeated subset "
                f"({self.subset_raw_tokens} tokens) it offers {self._unique_perm.size} unique windows of {T + 1} "
                f"tokens, but the run needs {self.n_unique} ((1 - f) D + f D / R = {need} tokens with "
                f"D = {self.windows_total * T}, f = {self.fraction}, R = {self.repeats}); use more data, fewer "
                "steps, a larger fraction or more repeats"
            )

    # ------------------------------------------------------------------ windows
    def window(self, sched_id: int) -> tuple[np.ndarray, int]:
        """(tokens (T + 1,), number of real tokens) of a schedule id; padding tokens are 0."""
        T1 = self.block + 1
        if sched_id < self.n_unique:
            w = self._unique_stream.read(int(self._unique_vstarts[sched_id]), T1)
        elif sched_id < self.n_unique + self.k:
            j = sched_id - self.n_unique
            w = self._subset_stream.read(int(self._subset_vstarts[j]), T1)
        else:  # the tail's tokens (tail targets), then fresh unique tokens for the rest of the window
            j = sched_id - self.n_unique - self.k
            head = self._subset_stream.read(self._tail_vstart, self.tail + 1)
            w = np.concatenate([head, self._unique_stream.read(int(self._mixed_vstarts[j]), T1 - head.size)])
        if w.size == T1:
            return w, T1
        out = np.zeros(T1, dtype=w.dtype)
        out[: w.size] = w
        return out, w.size

    def next_ids(self) -> np.ndarray:
        """Schedule ids of this rank's next micro-batch (see `window` for what each id holds)."""
        if self.pos >= self.micro_batches:
            raise UserError(
                f"the repetition schedule of {self.steps} steps x {self.grad_accum} micro-batches is used up; "
                "build the mixer with the run's full number of steps"
            )
        a = (self.pos * self.world + self.rank) * self.batch
        self.pos += 1
        return self.schedule[a : a + self.batch].astype(np.int64)

    def next(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (B, T) int64; the targets of padding positions are -1 (ignored by the loss)."""
        rows = [self.window(int(i)) for i in self.next_ids()]
        w = torch.from_numpy(np.stack([r[0] for r in rows]).astype(np.int64))
        x, y = w[:, :-1].contiguous(), w[:, 1:].clone()
        for b, (_, valid) in enumerate(rows):
            y[b, max(valid - 1, 0) :] = -1
        if torch.device(device).type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x, y

    def state_dict(self) -> dict:
        return {"pos": self.pos, "windows_total": self.windows_total, "subset_windows": self.k, "seed": self.seed,
                "subset_tokens": self.subset_tokens}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("windows_total", "subset_windows", "seed", "subset_tokens"):
            if key in state and state[key] != mine[key]:
                raise UserError(
                    f"the saved repetition schedule has {key}={state[key]} but this run's has {mine[key]}; "
                    "resume with the same steps, batch, fraction, repeats and seed"
                )
        self.pos = int(state["pos"])

    # ------------------------------------------------------------------ accounting and evaluation
    def accounting(self) -> dict:
        """Exact token counts of the run (tokens = loss-bearing target positions, the unit of D)."""
        T, R, k = self.block, self.repeats, self.k
        padding = R * (k * T - self.subset_tokens) if self.granularity == "document" else 0
        acct = {
            "granularity": self.granularity, "fraction": self.fraction, "repeats": R,
            "windows_total": self.windows_total, "tokens_total": self.windows_total * T,
            "subset_budget_tokens": self.fraction * self.windows_total * T / R,
            "subset_windows_target": self.k_target, "subset_windows": k,
            "subset_target_tokens": self.subset_target_tokens, "subset_tail_tokens": self.tail,
            "mixed_windows": self.n_mixed,
            "subset_documents": None if self.subset_documents is None else int(self.subset_documents.size),
            "subset_tokens": self.subset_tokens, "subset_raw_tokens": self.subset_raw_tokens,
            "repeated_windows": k * R, "repeated_tokens": R * self.subset_tokens,
            "epochs_on_subset": R, "unique_windows": self.n_unique,
            "unique_tokens": self.n_unique * T + self.n_mixed * (T - self.tail),
            "padding_tokens": padding, "heldout_unique_windows": int(self._heldout_vstarts.size),
            "train_split_tokens": int(self.tokens.size),
        }  # fmt: skip
        acct["total_tokens"] = acct["unique_tokens"] + acct["repeated_tokens"] + padding
        acct["repeated_fraction"] = acct["repeated_tokens"] / acct["tokens_total"]
        return acct

    def _eval(self, stream: _Stream, vstarts: np.ndarray, n_batches: int, batch_size: int | None, seed: int,
              what: str) -> np.ndarray:  # fmt: skip
        B = batch_size or self.batch
        if vstarts.size == 0:
            raise UserError(f"there are no {what} windows to evaluate on; {self._no_windows_hint(what)}")
        rng = np.random.default_rng([seed, _EVAL, ("repeated", "seen", "held-out").index(what)])
        n = n_batches * B
        pick = rng.choice(vstarts.size, size=n, replace=n > vstarts.size)
        rows = [stream.read(int(vstarts[i]), self.block + 1) for i in pick]
        return np.stack(rows).astype(np.int64).reshape(n_batches, B, self.block + 1)

    @staticmethod
    def _no_windows_hint(what: str) -> str:
        if what == "repeated":
            return "the subset is empty (fraction=0) or shorter than one window"
        return "use the val split (scalelab.data.batches.eval_windows) or more train data"

    def repeated_eval_windows(self, n_batches: int, batch_size: int | None = None, seed: int = 0) -> np.ndarray:
        """(n_batches, B, T + 1) full windows of the repeated subset, exactly as trained on."""
        full = self._subset_vstarts[self._subset_valid == self.block + 1]
        return self._eval(self._subset_stream, full, n_batches, batch_size, seed, "repeated")

    def unique_eval_windows(self, n_batches: int, batch_size: int | None = None, seed: int = 0,
                            seen: bool = False) -> np.ndarray:  # fmt: skip
        """(n_batches, B, T + 1) unique train windows: never used by this run (default) or seen once (seen=True).

        Neither kind shares a token with the repeated subset. The val/test splits remain the main
        held-out sets; these give loss on the train distribution at matched exposure.
        """
        vstarts = self._unique_vstarts if seen else self._heldout_vstarts
        return self._eval(self._unique_stream, vstarts, n_batches, batch_size, seed, "seen" if seen else "held-out")


# ---------------------------------------------------------------------- a corpus in which copying pays
PRINTABLE = np.array([chr(c) for c in range(33, 127)])  # the byte tokens the induction probe draws from


def write_copy_corpus(path: str | Path, chars: int = 8_000_000, span_share: float = 0.5, span_min: int = 8,
                      span_max: int = 25, copies_min: int = 3, copies_max: int = 5, seed: int = 0,
                      piece_chars: int = 1024, source: str = "stdlib") -> Path:  # fmt: skip
    """Write a JSONL corpus in which copying pays: random spans repeated back to back, between pieces of real text.

    `source` text is cut into pieces of `piece_chars` characters; each is replaced, with
    probability span_share, by a *span document*: span_min..span_max distinct printable non-space
    ASCII characters (the pool of the prefix-matching probe) repeated copies_min..copies_max times,
    the format of Olsson et al.'s (2022) probe. A span's first copy is unpredictable and its later
    copies are predictable only by copying from context, so induction heads pay off from the start
    of training (on real text alone a small model needs billions of tokens). Deterministic in its
    arguments; written atomically. Returns the path.
    """
    import json

    from scalelab.data.sources import iter_documents

    if (not 0 <= span_share <= 1 or not 2 <= span_min <= span_max <= PRINTABLE.size
            or not 2 <= copies_min <= copies_max or piece_chars < 16):  # fmt: skip
        raise UserError("corpus: span_share must lie in [0, 1], 2 <= span_min <= span_max <= 94, "
                        "2 <= copies_min <= copies_max and piece_chars >= 16; fix the [corpus] table")  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 77])
    total = 0
    with writing(path) as fh:
        for doc in iter_documents(source):
            for a in range(0, len(doc.text), piece_chars):
                text = doc.text[a : a + piece_chars]
                if rng.random() < span_share:
                    span = "".join(rng.choice(PRINTABLE, size=int(rng.integers(span_min, span_max + 1)), replace=False))
                    text = span * int(rng.integers(copies_min, copies_max + 1))
                fh.write(json.dumps({"text": text}) + "\n")
                total += len(text)
            if total >= chars:
                break
    return path
