"""The repetition mixer (Hernandez et al. 2022): exact accounting, disjointness, determinism, resume, ranks.

The synthetic token array is arange(N), so a token's value is its position and every window is
identified by its first token.
"""

from collections import Counter

import numpy as np
import pytest
import torch

from scalelab.data.repetition import RepetitionMixer
from scalelab.errors import UserError

T, B, STEPS = 8, 4, 25  # W = 100 windows, D = 800 tokens


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, size=n)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    starts = starts[starts < n]
    return np.arange(n, dtype=np.uint32), starts


def _mixer(granularity="chunk", fraction=0.3, repeats=5, seed=0, rank=0, world=1, steps=STEPS, max_overshoot=1.0,
           **kw):  # fmt: skip
    tokens, starts = _data(**kw)
    return RepetitionMixer(tokens, starts, T, B, steps, fraction, repeats, granularity=granularity, seed=seed,
                           rank=rank, world=world, max_overshoot=max_overshoot)  # fmt: skip


def _walk(m: RepetitionMixer, n: int | None = None):
    """(first token of each row, inputs, targets) over n micro-batches (default: the rest of the run)."""
    firsts, xs, ys = [], [], []
    for _ in range(m.micro_batches - m.pos if n is None else n):
        x, y = m.next()
        assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.int64
        firsts += x[:, 0].tolist()
        xs.append(x)
        ys.append(y)
    return firsts, torch.cat(xs), torch.cat(ys)


def _positions(m: RepetitionMixer, ids) -> set[int]:
    out = set()
    for i in ids:
        w, valid = m.window(int(i))
        out.update(w[:valid].tolist())
    return out


@pytest.mark.parametrize("granularity", ["chunk", "document"])
def test_exact_accounting_and_counts(granularity):
    m = _mixer(granularity)
    a = m.accounting()
    W, R, k = 100, 5, a["subset_windows"]
    assert a["windows_total"] == W and a["tokens_total"] == W * T
    assert a["subset_windows_target"] == round(0.3 * W / R) == 6
    assert a["repeated_windows"] == k * R and a["unique_windows"] == W - k * R
    assert a["repeated_tokens"] == R * a["subset_tokens"] and a["epochs_on_subset"] == R
    assert a["unique_tokens"] == a["unique_windows"] * T
    assert a["total_tokens"] == a["tokens_total"]
    if granularity == "chunk":
        assert k == 6 and a["subset_tokens"] == 6 * T and a["padding_tokens"] == 0
    else:
        assert k >= 6 and a["subset_tokens"] == a["subset_raw_tokens"] - 1 and a["subset_documents"] >= 1
    firsts, x, y = _walk(m)
    counts = Counter(firsts)
    unique_ids, subset_ids = range(m.n_unique), range(m.n_unique, m.n_unique + k)
    for i in unique_ids:
        assert counts.pop(int(m.window(i)[0][0])) == 1
    for i in subset_ids:
        assert counts.pop(int(m.window(i)[0][0])) == R
    assert not counts  # nothing else was served
    assert int((y >= 0).sum()) == a["unique_tokens"] + a["repeated_tokens"]
    assert int((y < 0).sum()) == a["padding_tokens"]
    with pytest.raises(UserError, match="used up"):
        m.next()


@pytest.mark.parametrize("granularity", ["chunk", "document"])
def test_subset_disjoint_from_unique(granularity):
    m = _mixer(granularity)
    subset = _positions(m, range(m.n_unique, m.n_unique + m.k))
    unique = _positions(m, range(m.n_unique))
    assert subset and unique and not subset & unique
    heldout = m.unique_eval_windows(3, seed=1)
    assert heldout.shape == (3, B, T + 1)
    assert not subset & set(heldout.ravel().tolist())
    assert not unique & set(heldout.ravel().tolist())  # never scheduled
    rep = m.repeated_eval_windows(2, batch_size=3)
    assert rep.shape == (2, 3, T + 1) and set(rep.ravel().tolist()) <= subset
    seen = m.unique_eval_windows(2, seen=True)
    assert set(seen.ravel().tolist()) <= unique


def test_document_granularity_respects_boundaries():
    tokens, starts = _data()
    m = _mixer("document")
    ends = np.append(starts[1:], tokens.size)
    docs = set()
    for d in m.subset_documents:
        docs.update(range(starts[d], ends[d]))
    subset = _positions(m, range(m.n_unique, m.n_unique + m.k))
    assert subset == docs  # the subset is exactly whole documents
    unique = _positions(m, range(m.n_unique)) | set(m.unique_eval_windows(5).ravel().tolist())
    assert not unique & docs
    # the budget rule: the documents before the last one do not yet fill k_target windows
    lengths = (ends - starts)[m.subset_documents]
    assert np.ceil((lengths[:-1].sum() - 1) / T) < m.k_target <= m.k
    _, _, y = _walk(m)
    assert int((y == -1).sum()) == m.accounting()["padding_tokens"]


def test_padding_is_ignored_by_the_loss():
    """The padded tail of a document subset scores nothing: the loss is the mean over real targets only."""
    import torch.nn.functional as F

    from scalelab.model import GPT, GPTConfig

    m = _mixer("document")
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=1, n_embd=16, block_size=T, vocab_size=3000))
    for p in model.parameters():  # no zero-initialised head: every target gets its own loss
        torch.nn.init.normal_(p, std=0.5)
    for _ in range(m.micro_batches):
        x, y = m.next()
        pad = y == -1
        if not pad.any():
            continue
        assert (x[:, 1:][pad[:, :-1]] == 0).all() and not (y[~pad] < 0).any()  # padding: inputs 0, targets -1
        logits, loss = model(x, y)
        nll = F.cross_entropy(logits.view(-1, logits.size(-1)), y.clamp_min(0).view(-1), reduction="none")
        real = nll.view(y.shape)[~pad].mean()
        as_token_zero = nll.mean()  # what the loss would be if padding were scored as token 0
        assert torch.allclose(loss, real, atol=1e-5)
        assert not torch.allclose(loss, as_token_zero, atol=1e-3)
        return
    pytest.fail("no padded window was served")


QUICK_W, QUICK_T = 300 * 16, 64  # the quick preset: 300 steps x 16 rows x 64 tokens


@pytest.mark.parametrize("repeats", [1, 2, 3, 4, 7, 16, 64, 100, 256, 1000, 1024])
def test_realised_fraction_within_one_percent_of_nominal(repeats):
    """Whole-window subsets made f drift with R (0.427 for 0.5 at R = 1024); the token-exact tail keeps it."""
    tokens = np.arange(400_000, dtype=np.uint32)
    m = RepetitionMixer(tokens, None, QUICK_T, 16, 300, 0.5, repeats, granularity="chunk", seed=0)
    a = m.accounting()
    assert a["tokens_total"] == QUICK_W * QUICK_T and a["padding_tokens"] == 0
    assert a["repeated_tokens"] + a["unique_tokens"] == a["tokens_total"]
    assert abs(a["repeated_fraction"] - 0.5) <= 0.005
    assert a["subset_tokens"] == a["subset_target_tokens"] == round(0.5 * QUICK_W * QUICK_T / repeats)


def test_subset_tail_served_in_mixed_windows():
    """S = round(0.3 * 800 / 7) = 34 tokens: 4 whole windows and a tail of 2, each target R times, no other twice."""
    m = _mixer("chunk", fraction=0.3, repeats=7)
    a = m.accounting()
    assert (a["subset_tokens"], a["subset_windows"], a["subset_tail_tokens"], a["mixed_windows"]) == (34, 4, 2, 7)
    assert a["unique_windows"] == 100 - 4 * 7 - 7 and a["repeated_tokens"] == 7 * 34
    _, x, y = _walk(m)
    assert not (y < 0).any()
    subset = _positions(m, range(m.n_unique, m.n_unique + m.k))
    tail = set(range(m._tail_vstart + 1, m._tail_vstart + 3))  # the tail's 2 targets (its first token is input only)
    counts = Counter(y.ravel().tolist())
    assert all(counts[t] == 7 for t in tail)
    repeated = sum(c for t, c in counts.items() if t in subset or t in tail)
    assert repeated == a["repeated_tokens"] == int(round(a["repeated_fraction"] * a["tokens_total"]))
    assert all(c == 1 for t, c in counts.items() if t not in subset and t not in tail)  # unique tokens: once
    heldout = set(m.unique_eval_windows(3).ravel().tolist())
    assert not heldout & (subset | tail) and not heldout & set(counts)


def test_determinism_by_seed():
    a, b, c = _mixer("document", seed=3), _mixer("document", seed=3), _mixer("document", seed=4)
    fa, xa, _ = _walk(a)
    fb, xb, _ = _walk(b)
    fc, _, _ = _walk(c)
    assert fa == fb and torch.equal(xa, xb)
    assert fa != fc
    assert not np.array_equal(a.subset_documents, c.subset_documents)


@pytest.mark.parametrize("granularity", ["chunk", "document"])
def test_resume_mid_run(granularity):
    full = _mixer(granularity)
    first, _, _ = _walk(full, 7)
    rest, x_rest, y_rest = _walk(full)
    part = _mixer(granularity)
    _walk(part, 7)
    state = part.state_dict()
    resumed = _mixer(granularity)
    resumed.load_state_dict(state)
    again, x2, y2 = _walk(resumed)
    assert again == rest and torch.equal(x2, x_rest) and torch.equal(y2, y_rest)
    with pytest.raises(UserError, match="resume with the same"):
        _mixer(granularity, steps=STEPS + 5).load_state_dict(state)


def test_ranks_are_disjoint_and_cover_the_schedule():
    single = _mixer("chunk", steps=24)
    ranks = [_mixer("chunk", rank=r, world=2, steps=12) for r in range(2)]
    assert ranks[0].accounting()["windows_total"] == single.accounting()["windows_total"] == 96
    assert np.array_equal(ranks[0].schedule, ranks[1].schedule)
    slots = []  # schedule slots served, in order: rank 0's block then rank 1's, step by step
    for _ in range(12):
        for r in ranks:
            slots.append(r.next_ids())
    # every slot of the schedule is served exactly once, by exactly one rank
    assert np.array_equal(np.concatenate(slots), ranks[0].schedule)
    served = [Counter(np.concatenate(slots[r::2]).tolist()) for r in range(2)]
    assert served[0] + served[1] == Counter(ranks[0].schedule.tolist())


def test_user_errors_say_what_to_change():
    with pytest.raises(UserError, match="unique windows"):
        _mixer("chunk", n=600)
    with pytest.raises(UserError, match="unique windows"):
        _mixer("document", n=600)
    with pytest.raises(UserError, match="less than one window"):
        _mixer("chunk", fraction=0.01, repeats=50)
    with pytest.raises(UserError, match="granularity"):
        _mixer("sentence")
    # one long document next to a small budget: refused rather than repeating far more than f
    tokens = np.arange(3000)
    with pytest.raises(UserError, match="max_overshoot"):
        RepetitionMixer(tokens, np.array([0, 10, 1000]), T, B, STEPS, 0.3, 5, seed=0)
    with pytest.raises(UserError, match="document offsets"):
        RepetitionMixer(np.arange(100), np.array([5, 3]), T, B, 2, 0.5, 2)


def test_no_repetition_is_a_plain_unique_run():
    m = _mixer("document", fraction=0.0, repeats=1)
    a = m.accounting()
    assert a["subset_windows"] == 0 and a["repeated_tokens"] == 0 and a["unique_tokens"] == a["tokens_total"]
    firsts, _, _ = _walk(m)
    assert len(set(firsts)) == len(firsts) == 100
