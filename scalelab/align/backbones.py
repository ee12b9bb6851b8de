"""Backbones of a preference model: a scalelab GPT, or a Hugging Face causal LM from a local folder.

A backbone turns token ids (B, T) into the final hidden state at chosen positions (B, C), the
input of the PM's scalar head, and into next-token logits (B, T, V) for the imitation objective and
log-probability scoring. Sequences are right-padded: under causal attention no real position ever
attends to a padding position, so the hidden state read at a sequence's end-of-context token is the
same whatever the batch holds (Bai et al. 2022, arXiv 2204.05862, list "reward read at a padding
token" among the failures to avoid).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from scalelab.config import ModelConfig
from scalelab.data import tokenizers as tk
from scalelab.errors import UserError
from scalelab.model import GPT, GPTConfig, resolve

HF_INSTALL = "pip install 'scalelab[hf]'"


class GPTBackbone(nn.Module):
    """A scalelab GPT; hidden states come from its hook point ``final`` (after the final norm)."""

    kind = "gpt"

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt

    @property
    def block_size(self) -> int:
        return self.gpt.cfg.block_size

    @property
    def n_embd(self) -> int:
        return self.gpt.cfg.n_embd

    def param_counts(self) -> dict[str, int]:
        return self.gpt.param_counts()

    def config_dict(self) -> dict:
        return self.gpt.cfg.to_dict()

    def hidden_at(self, idx: torch.Tensor, positions: torch.Tensor,
                  lengths: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """(B, T) ids, (B,) positions -> (B, C) final hidden states at those positions.

        The hook on ``final`` keeps only the requested positions, so the LM head runs on one
        position per sequence instead of T (it matters with a large vocabulary).
        """
        rows = torch.arange(idx.size(0), device=idx.device)
        captured: dict[str, torch.Tensor] = {}

        def grab(x: torch.Tensor, name: str) -> torch.Tensor:
            captured["h"] = x[rows, positions]  # (B, C)
            return captured["h"].unsqueeze(1)  # (B, 1, C)

        with self.gpt.hooks([("final", grab)]):
            self.gpt(idx)
        return captured["h"]

    def logits(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, V) next-token logits."""
        return self.gpt(idx)[0]


class HFBackbone(nn.Module):
    """A Hugging Face causal LM (``AutoModelForCausalLM``) loaded from a local folder.

    Needs the ``hf`` extra (transformers). The hidden state is the trunk's last hidden state (the
    causal LM's last ``hidden_states`` entry), after the final norm in GPT-2, Llama, Mistral and Pythia.
    """

    kind = "hf"

    def __init__(self, model: nn.Module, source: str, context: int | None = None):
        super().__init__()
        self.model = model
        self.source = source
        self.context = context  # `--context`: at most this many positions are used (None: all the model has)

    @property
    def block_size(self) -> int:
        cfg = self.model.config
        positions = int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 1024))
        return min(positions, self.context) if self.context else positions

    @property
    def n_embd(self) -> int:
        return int(self.model.config.hidden_size)

    def param_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        embed = self.model.get_input_embeddings().weight.numel()
        return {"params": total, "params_nonembed": total - embed, "params_flops": total}

    def config_dict(self) -> dict:
        return {"source": self.source, "model_type": getattr(self.model.config, "model_type", None),
                "context": self.context}  # fmt: skip

    def _mask(self, idx: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """The padding mask of (B, T) right-padded ids (kept for callers that left-pad; not used here)."""
        if lengths is None:
            return None
        return (torch.arange(idx.size(1), device=idx.device)[None, :] < lengths[:, None]).long()

    def hidden_at(self, idx: torch.Tensor, positions: torch.Tensor,
                  lengths: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """(B, T) right-padded ids, (B,) positions -> (B, C) the trunk's last hidden state there.

        No padding mask is passed (an all-ones one, which says so): with right padding and causal
        attention no real position sees a padding one, and without padding the model takes its plain
        causal attention path (on CPU the fused kernel, not a masked softmax): the same states at
        every real position (tested), faster.
        """
        # the trunk alone (`base_model`: GPT2Model, LlamaModel, ...): its last hidden state is the causal
        # LM's `hidden_states[-1]`, without the full-vocabulary logits and every layer's states
        out = self.model.base_model(input_ids=idx, attention_mask=torch.ones_like(idx))
        rows = torch.arange(idx.size(0), device=idx.device)
        return out.last_hidden_state[rows, positions]  # (B, C)

    def logits(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) right-padded ids -> (B, T, V); the logits at padding positions are not meaningful."""
        return self.model(input_ids=idx, attention_mask=torch.ones_like(idx)).logits


def import_transformers():
    """The transformers module, or a UserError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise UserError(f"a Hugging Face backbone needs transformers; install it with: {HF_INSTALL}") from None
    return transformers


def is_hf_folder(path: Path) -> bool:
    """A local Hugging Face model folder: config.json and weights, and no scalelab model.json."""
    return (path / "config.json").is_file() and not (path / "model.json").is_file() and not (path / "ckpt").exists()


def load_hf_backbone(folder: str | Path, context: int | None = None) -> tuple[HFBackbone, tk.HFTokenizer]:
    """(backbone, tokenizer) from a local folder holding a causal LM and its tokenizer.json; `context`
    caps the positions used (texts are cut to it), None keeps all of the model's."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(f"{folder}: no such folder; give a local Hugging Face model folder (config.json, weights)")
    if not any(path.glob("*.safetensors")) and any(path.glob("*.bin")):
        raise UserError(f"{folder} holds pickled weights (*.bin) and no .safetensors; scalelab never unpickles "
                        "a weights file, so convert the model to safetensors first")  # fmt: skip
    transformers = import_transformers()
    if not any(path.glob("*.safetensors")):
        raise UserError(f"{folder} holds no .safetensors weights; give a folder saved with safe_serialization")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True)
    tokenizer = tk.load_pretrained(str(path))
    return HFBackbone(model, str(path), context), tokenizer


def fresh_gpt_backbone(size: str, context: int, recipe: str = "modern", seed: int = 0) -> tuple[GPTBackbone, object]:
    """A randomly initialised ladder GPT (``size`` as in `shape_for_size`) with the byte tokenizer."""
    tokenizer = tk.ByteTokenizer()
    cfg = resolve(ModelConfig(recipe=recipe, size=size, block_size=context), tokenizer.vocab_size)
    torch.manual_seed(seed)
    return GPTBackbone(GPT(cfg)), tokenizer


def gpt_backbone_from_config(cfg: dict) -> GPTBackbone:
    """An uninitialised-weights GPT backbone of a saved shape (weights are loaded afterwards)."""
    return GPTBackbone(GPT(GPTConfig(**cfg)))
