"""Two responses to a human turn: one from each of two models, or two samples of one model.

Sampling uses the KV cache (`scalelab.model.generate.generate`); two samples of one model go as a
batch of two. The context is the HH transcript so far plus the new human turn and the assistant
marker (Bai et al. 2022, arXiv 2204.05862, section 2.2: the labeller talks with the model and picks
the better of two responses at every turn). A response ends at the model's end-of-text token or at
the next turn marker it writes itself; the prompt is cut from the left to leave room for
`max_new_tokens` in the model's context.

Models are named by run id or run name in the store (`<workdir>/scalelab.db`), never by path: a name
is checked before the store is asked, and the checkpoint folder comes from the store's run id.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scalelab.errors import UserError
from scalelab.feedback.hh_format import prompt_for
from scalelab.model.generate import generate
from scalelab.names import check_name

STOP_MARKERS = ("\n\nHuman:", "\n\nAssistant:", "\nHuman:", "\nAssistant:")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # control characters but tab and newline


def check_model_name(name: str) -> str:
    """A run id or name safe to look up (`scalelab.names.check_name`: letters, digits, '._-=+', no path)."""
    if not isinstance(name, str) or not name:
        raise UserError("an empty model name; give a run id or run name from `scalelab runs`")
    return check_name(name, "the model name (a run id or run name; see `scalelab runs`)")


@dataclass
class LoadedModel:
    name: str
    model: torch.nn.Module
    tokenizer: object


def load_models(names: list[str], workdir: str | Path, device: str = "cpu") -> list[LoadedModel]:
    """Each name (checked) looked up in the run store of `workdir`, its latest checkpoint loaded."""
    if not names or len(names) > 2:
        raise UserError(f"give one or two models with --models (got {len(names)}); one model gives two samples")
    checked = [check_model_name(n) for n in names]
    db = Path(workdir) / "scalelab.db"
    if not db.is_file():
        raise UserError(f"no run store in {workdir}; train a model first or pass the right --workdir")
    from scalelab.store import RunStore

    store = RunStore(db)
    try:
        runs = [store.get_run(n) for n in checked]
    finally:
        store.close()
    loaded = []
    for name, run in zip(checked, runs):
        if run is None:
            raise UserError(f"no run named {name!r} in {workdir}; see `scalelab runs`")
        model, tokenizer = _load_checkpoint(Path(workdir) / "runs" / check_model_name(run["id"]), device)
        model.eval()
        loaded.append(LoadedModel(name, model, tokenizer))
    return loaded


def _load_checkpoint(run_dir: Path, device: str):
    """The checked loader: checksums, tokenizer and weights verified against the model description."""
    from scalelab.train.checkpoint import load_for_inference

    model, tokenizer, _ = load_for_inference(run_dir, device=device)
    return model, tokenizer


def cut_response(text: str) -> str:
    """The response up to the first turn marker the model wrote itself, without control characters, stripped."""
    end = len(text)
    for marker in STOP_MARKERS:
        i = text.find(marker)
        if i != -1:
            end = min(end, i)
    return _CONTROL.sub("", text[:end]).strip()


@dataclass
class Responder:
    """Samples the two responses of a turn; one lock, so concurrent requests take turns on the CPU."""

    models: list[LoadedModel]
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_k: int | None = 50
    rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def _sample(self, m: LoadedModel, prompt: str, n: int, seed: int) -> list[str]:
        block = m.model.cfg.block_size
        ids = list(m.tokenizer.encode(prompt))
        keep = max(1, block - self.max_new_tokens) if block > self.max_new_tokens else block
        ids = ids[-keep:] or [m.tokenizer.eot_id]
        device = next(m.model.parameters()).device
        idx = torch.tensor([ids] * n, dtype=torch.long, device=device)  # (n, T)
        gen = torch.Generator(device=device).manual_seed(seed)
        out = generate(m.model, idx, self.max_new_tokens, temperature=self.temperature, top_k=self.top_k,
                       generator=gen)  # fmt: skip
        texts = []
        for row in out[:, len(ids) :].tolist():
            if m.tokenizer.eot_id in row:
                row = row[: row.index(m.tokenizer.eot_id)]
            texts.append(cut_response(m.tokenizer.decode(row)))
        return texts

    def respond(self, context: str, human: str) -> tuple[tuple[str, str], tuple[str, str], dict, bool]:
        """((response a, response b), (model a, model b), settings, swapped); a is shown left.

        The two samples are put in random order (`swapped`: the first model's sample went right).
        """
        prompt = prompt_for(context, human)
        seed = self.rng.randrange(2**31)
        with self._lock, torch.no_grad():
            if len(self.models) == 1:
                first, second = self._sample(self.models[0], prompt, 2, seed)
                names = (self.models[0].name, self.models[0].name)
            else:
                first = self._sample(self.models[0], prompt, 1, seed)[0]
                second = self._sample(self.models[1], prompt, 1, seed + 1)[0]
                names = (self.models[0].name, self.models[1].name)
        swapped = self.rng.random() < 0.5
        settings = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_k": self.top_k,
                    "seed": seed, "models": list(self.model_names)}  # fmt: skip
        if swapped:
            return (second, first), (names[1], names[0]), settings, True
        return (first, second), names, settings, False
