"""A preference model: a language-model backbone and a scalar head read at an end-of-context token.

Askell et al. 2021 (arXiv 2112.00861, section 4) and Bai et al. 2022 (arXiv 2204.05862) score a
text by appending an end-of-context token and reading a linear head on the final hidden state at
that token. Here a scored sequence is::

    [eot] + prompt tokens + response tokens + [eot]     (the score is read at the last eot)

The leading eot is the document separator the backbone saw in pre-training, so even an empty prompt
gives the first response token a context. Over-long texts are cut from the LEFT of the dialogue with
`truncate_left` (the response and the appended token always fit) and every cut is counted.

A model trained with the imitation objective has no head: its score is the log-probability of the
response (and the closing eot) given the prompt, summed over tokens. Either way ``score`` ranks
responses: higher is preferred. Checkpoints are folders with ``pm.json``, ``model.safetensors`` and
``tokenizer.json``, written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from scalelab.align.backbones import (
    GPTBackbone,
    HFBackbone,
    gpt_backbone_from_config,
    import_transformers,
    is_hf_folder,
    load_hf_backbone,
)
from scalelab.align.objectives import OBJECTIVES, response_logprobs
from scalelab.atomic import building_dir
from scalelab.data import tokenizers as tk
from scalelab.data.comparisons import truncate_left
from scalelab.errors import UserError

PM_FORMAT = "scalelab-pm"
PM_VERSION = 1


@dataclass(frozen=True)
class ScoredText:
    """Token ids of one scored sequence: ``ids[n_prefix:]`` is the response plus the closing eot."""

    ids: list[int]
    n_prefix: int
    truncated: bool
    response_truncated: bool


@dataclass
class TruncationCounts:
    """How many scored sequences were cut to fit the context (never dropped)."""

    n_sequences: int = 0
    n_truncated: int = 0
    n_response_truncated: int = 0

    def add(self, text: ScoredText) -> None:
        self.n_sequences += 1
        self.n_truncated += int(text.truncated)
        self.n_response_truncated += int(text.response_truncated)


def response_separator(prompt: str, response: str) -> str:
    """" " between a prompt ending in ':' (HH's "Assistant:") and a response not starting with space."""
    return " " if prompt.endswith(":") and response and not response[0].isspace() else ""


@dataclass
class Batch:
    """Right-padded sequences: ``idx`` (B, T), ``lengths`` (B,), score positions (B,), LM targets (B, T)."""

    idx: torch.Tensor
    lengths: torch.Tensor
    score_pos: torch.Tensor
    targets: torch.Tensor  # next-token targets of response tokens, -1 elsewhere

    def to(self, device: torch.device) -> Batch:
        return Batch(self.idx.to(device), self.lengths.to(device), self.score_pos.to(device), self.targets.to(device))


def collate(texts: Sequence[ScoredText], pad_id: int = 0) -> Batch:
    """Right-pad scored sequences into one batch; the score position is each sequence's last token."""
    B, T = len(texts), max(len(t.ids) for t in texts)
    idx = torch.full((B, T), pad_id, dtype=torch.long)
    targets = torch.full((B, T), -1, dtype=torch.long)
    lengths = torch.tensor([len(t.ids) for t in texts], dtype=torch.long)
    for b, t in enumerate(texts):
        ids = torch.tensor(t.ids, dtype=torch.long)
        idx[b, : len(t.ids)] = ids
        # position p predicts token p + 1: the response tokens and the closing eot
        targets[b, t.n_prefix - 1 : len(t.ids) - 1] = ids[t.n_prefix :]
    return Batch(idx, lengths, lengths - 1, targets)


class PreferenceModel(nn.Module):
    """Backbone + scalar head (ranked / binary objectives) or backbone alone scored by log-probability.

    ``score(prompts, responses)`` and ``reward(prompt_ids, response_ids)`` return one float per text,
    higher = preferred, for evaluation and for RLHF (Bai et al. 2022, section 4).
    """

    def __init__(self, backbone: GPTBackbone | HFBackbone, tokenizer, objective: str = "ranked"):
        super().__init__()
        if objective not in OBJECTIVES:
            raise UserError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.objective = objective
        self.head = nn.Linear(backbone.n_embd, 1)
        nn.init.zeros_(self.head.weight)  # every score starts at 0: P(A > B) = 0.5 for all pairs
        nn.init.zeros_(self.head.bias)
        self.meta: dict = {}  # provenance written to pm.json (training config, run id, ...)

    # ------------------------------------------------------------------ properties
    @property
    def scoring(self) -> str:
        """'logprob' for an imitation model, 'head' otherwise."""
        return "logprob" if self.objective == "imitation" else "head"

    @property
    def context(self) -> int:
        return self.backbone.block_size

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    # ------------------------------------------------------------------ encoding
    def encode_ids(self, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> ScoredText:
        """[eot] + prompt + response + [eot], cut from the left of the prompt to fit the context."""
        if self.context < 3:
            raise UserError(f"the backbone's context ({self.context}) is too short to score a text")
        cut = truncate_left(list(prompt_ids), list(response_ids), self.context - 2)
        eot = self.tokenizer.eot_id
        return ScoredText([eot, *cut.ids, eot], 1 + cut.n_prefix, cut.truncated, cut.response_truncated)

    def encode(self, prompt: str, response: str) -> ScoredText:
        prompt_ids = self.tokenizer.encode(prompt).tolist() if prompt else []
        response_ids = self.tokenizer.encode(response_separator(prompt, response) + response).tolist()
        return self.encode_ids(prompt_ids, response_ids)

    # ------------------------------------------------------------------ scoring
    def head_scores(self, batch: Batch) -> torch.Tensor:
        """(B,) scalar head outputs at each sequence's end-of-context token."""
        h = self.backbone.hidden_at(batch.idx, batch.score_pos, batch.lengths)  # (B, C)
        return self.head(h.to(self.head.weight.dtype)).squeeze(-1)

    def logprob_scores(self, batch: Batch) -> torch.Tensor:
        """(B,) summed log-probability of each response and its closing eot given the prompt."""
        return response_logprobs(self.backbone.logits(batch.idx, batch.lengths), batch.targets)

    def batch_scores(self, batch: Batch) -> torch.Tensor:
        return self.logprob_scores(batch) if self.scoring == "logprob" else self.head_scores(batch)

    @torch.no_grad()
    def score_texts(self, texts: Sequence[ScoredText], batch_size: int = 64) -> torch.Tensor:
        """(N,) scores of encoded texts, in batches sorted by length (less padding), on CPU."""
        was = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i].ids))
        out = torch.empty(len(texts))
        cuda = self.device.type == "cuda"
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            with ctx:
                out[chunk] = self.batch_scores(collate([texts[i] for i in chunk]).to(self.device)).float().cpu()
        self.train(was)
        return out

    def score(self, prompts: Sequence[str] | str, responses: Sequence[str] | None = None,
              batch_size: int = 64) -> torch.Tensor:  # fmt: skip
        """(N,) scores of texts (``score(texts)``) or of prompt/response pairs (``score(prompts, responses)``)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if responses is None:
            prompts, responses = [""] * len(prompts), list(prompts)
        if len(prompts) != len(responses):
            raise UserError(f"got {len(prompts)} prompts but {len(responses)} responses; pass one of each per text")
        return self.score_texts([self.encode(p, r) for p, r in zip(prompts, responses)], batch_size)

    def reward(self, prompt_ids: Sequence[Sequence[int] | torch.Tensor],
               response_ids: Sequence[Sequence[int] | torch.Tensor], batch_size: int = 64) -> torch.Tensor:  # fmt: skip
        """(N,) scores of token-id prompts and responses (in this model's tokenizer), for RLHF."""
        if len(prompt_ids) != len(response_ids):
            raise UserError(f"got {len(prompt_ids)} prompts but {len(response_ids)} responses")
        as_list = [(torch.as_tensor(p).tolist(), torch.as_tensor(r).tolist()) for p, r in zip(prompt_ids, response_ids)]
        return self.score_texts([self.encode_ids(p, r) for p, r in as_list], batch_size)

    # ------------------------------------------------------------------ checkpoints
    def param_counts(self) -> dict[str, int]:
        return self.backbone.param_counts()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``pm.json``, weights and ``tokenizer.json`` to ``path`` atomically (temp folder, rename)."""
        path = Path(path)
        info = {"format": PM_FORMAT, "version": PM_VERSION, "objective": self.objective, "scoring": self.scoring,
                "backbone": self.backbone.kind, "backbone_config": self.backbone.config_dict(),
                "context": self.context, "meta": self.meta}  # fmt: skip
        with building_dir(path, replace=True) as tmp:
            if isinstance(self.backbone, HFBackbone):
                self.backbone.model.save_pretrained(str(tmp / "backbone"))
                save_model(self.head, str(tmp / "head.safetensors"))
            else:
                save_model(self, str(tmp / "model.safetensors"))
            tk.save_spec(self.tokenizer, tmp / "tokenizer.json")
            (tmp / "pm.json").write_text(json.dumps(info, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> PreferenceModel:
        """A saved PM from its folder (or the run folder holding it as ``pm/``)."""
        folder = find_pm_folder(Path(path))
        if folder is None:
            raise UserError(f"{path} holds no preference model (no pm.json); give a PM run folder or its pm/ folder")
        info = json.loads((folder / "pm.json").read_text())
        if info.get("format") != PM_FORMAT:
            raise UserError(f"{folder / 'pm.json'} is not a scalelab PM checkpoint (format {info.get('format')!r})")
        tokenizer = tk.load_spec(folder / "tokenizer.json")
        if info["backbone"] == "hf":
            transformers = import_transformers()
            model = transformers.AutoModelForCausalLM.from_pretrained(str(folder / "backbone"), use_safetensors=True)
            source, context = info["backbone_config"].get("source", ""), info["backbone_config"].get("context")
            pm = cls(HFBackbone(model, source, context), tokenizer, info["objective"])
            load_model(pm.head, str(folder / "head.safetensors"), device="cpu")
        else:
            model_vocab = int(info["backbone_config"].get("vocab_size", 0))
            if tokenizer.vocab_size > model_vocab:
                raise UserError(f"{folder}: tokenizer.json has {tokenizer.vocab_size} tokens but the model only "
                                f"{model_vocab}; the folder mixes files of two PMs, copy it again")  # fmt: skip
            pm = cls(gpt_backbone_from_config(info["backbone_config"]), tokenizer, info["objective"])
            try:
                load_model(pm, str(folder / "model.safetensors"), device="cpu")
            except (SafetensorError, OSError, RuntimeError) as e:  # not safetensors, truncated, other shapes
                raise UserError(f"{folder / 'model.safetensors'} does not hold this PM's weights ({e}); "
                                "train or copy the PM again") from None  # fmt: skip
        pm.meta = info.get("meta", {})
        return pm.to(device)


def load_pm(path_or_run: str | os.PathLike[str], workdir: str | os.PathLike[str] = "scalelab-work",
            device: str | torch.device = "cpu", objective: str | None = None,
            context: int | None = None) -> PreferenceModel:  # fmt: skip
    """The one way to load a scorer: a saved PM, a scalelab LM checkpoint, or a Hugging Face folder.

    ``path_or_run`` is a PM folder (or the run folder holding ``pm/``), a run id / name in
    ``workdir``'s store, a checkpoint folder, or ``hf:FOLDER``. A saved PM keeps its head and its
    objective unless ``objective`` is given; a language model (scalelab or Hugging Face) gets a
    fresh zero head and the objective ``objective`` or, by default, 'imitation' (scored by summed
    log-probability). Weights are read from safetensors only, never unpickled. ``context`` caps the
    positions an ``hf:`` backbone uses (a scalelab checkpoint and a saved PM keep their own).
    """
    spec = str(path_or_run)
    if not spec.startswith("hf:") and find_pm_folder(Path(spec)) is None and is_hf_folder(Path(spec)):
        spec = f"hf:{spec}"
    if spec.startswith("hf:"):
        backbone, tokenizer = load_hf_backbone(spec.removeprefix("hf:"), context)
        return PreferenceModel(backbone, tokenizer, objective or "imitation").to(device)
    from scalelab.sampling import resolve_checkpoint
    from scalelab.train.checkpoint import load_model_from_checkpoint

    path = resolve_checkpoint(spec, workdir)
    if find_pm_folder(path) is not None:
        pm = PreferenceModel.load(path, device)
        pm.objective = objective or pm.objective
        return pm
    model, tokenizer, _ = load_model_from_checkpoint(path)
    return PreferenceModel(GPTBackbone(model), tokenizer, objective or "imitation").to(device)


def find_pm_folder(path: Path) -> Path | None:
    """``path`` itself or ``path/pm`` if it holds pm.json; else None."""
    for candidate in (path, path / "pm"):
        if (candidate / "pm.json").is_file():
            return candidate
    return None


@dataclass
class EncodedPairs:
    """Comparisons encoded for a PM: one chosen and one rejected sequence per pair, and truncation counts."""

    chosen: list[ScoredText]
    rejected: list[ScoredText]
    counts: TruncationCounts = field(default_factory=TruncationCounts)

    def __len__(self) -> int:
        return len(self.chosen)


def encode_pairs(pm: PreferenceModel, comparisons: Sequence) -> EncodedPairs:
    """Encode (prompt, chosen, rejected) comparisons for ``pm``, counting every truncation."""
    out = EncodedPairs([], [])
    for c in comparisons:
        good, bad = pm.encode(c.prompt, c.chosen), pm.encode(c.prompt, c.rejected)
        out.chosen.append(good)
        out.rejected.append(bad)
        out.counts.add(good)
        out.counts.add(bad)
    return out
