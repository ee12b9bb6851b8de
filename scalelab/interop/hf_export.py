"""Export a scalelab checkpoint as a Hugging Face model folder that loads with no custom code.

`export_hf(run, out_dir)` writes `model.safetensors`, `config.json`, `generation_config.json`, the
tokenizer (`tokenizer.json` + `tokenizer_config.json`, same ids as scalelab's) and a model card
`README.md`; the `gpt2` recipe becomes `GPT2LMHeadModel`, the `modern` recipe `Qwen3ForCausalLM`
(with QK-norm) or `LlamaForCausalLM` (`model.qk_norm=false`); see `hf_weights` and `hf_llama` for
why the computation is identical. Before anything is written the HF model's
logits are compared with scalelab's on random ids and on real text: a mismatch writes nothing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from scalelab.errors import UserError
from scalelab.interop.check import max_logit_diff, probe_inputs, require_match
from scalelab.interop.hf_tokenizer import save_tokenizer
from scalelab.interop.hf_weights import architecture_for, hf_config, to_hf_state
from scalelab.interop.model_card import model_card, run_record

HF_INSTALL = "pip install 'scalelab[hf]'"


def require_transformers():
    try:
        import transformers
    except ImportError:
        raise UserError(f"Hugging Face export and import need transformers; install it with {HF_INSTALL}") from None
    return transformers


def build_hf_model(gpt, arch: str, eot_id: int):
    """The HF model holding `gpt`'s weights (fp32, eval mode)."""
    transformers = require_transformers()
    import torch

    config = hf_config(gpt.cfg, arch, eot_id)
    model_cls = {"gpt2": transformers.GPT2LMHeadModel, "qwen3": transformers.Qwen3ForCausalLM,
                 "llama": transformers.LlamaForCausalLM}[arch]  # fmt: skip
    torch.manual_seed(0)  # the random initialisation is overwritten; seeded so that nothing varies
    model = model_cls(config)
    model.load_state_dict(to_hf_state(gpt.state_dict(), gpt.cfg, arch), strict=True)
    if gpt.cfg.tie_embeddings:
        model.tie_weights()
    model.generation_config = transformers.GenerationConfig(bos_token_id=eot_id, eos_token_id=eot_id,
                                                            pad_token_id=eot_id)  # fmt: skip
    return model.float().eval()


def _prepare_out(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; give a folder to export into")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise UserError(f"{out_dir} exists and is not empty; choose a new folder or pass --overwrite")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def export_hf(run_or_ckpt: str | Path, out_dir: str | Path, workdir: str | Path | None = None,
              overwrite: bool = False, phase: Callable[[str], None] | None = None) -> dict:  # fmt: skip
    """Write the HF folder of a run's newest checkpoint (or of a checkpoint folder); return what was done:
    {"out", "architecture", "hf_class", "logit_diff", "files", "seconds", "run_id", "step"}.
    `phase(text)` is told what is being done (for a progress line)."""
    require_transformers()
    from scalelab.train.checkpoint import load_for_inference

    phase = phase or (lambda text: None)
    t0 = time.perf_counter()
    phase("loading the checkpoint")
    gpt, tokenizer, info = load_for_inference(run_or_ckpt, workdir)
    arch = architecture_for(gpt.cfg)  # refuses before any work
    phase(f"building the {arch} model")
    hf_model = build_hf_model(gpt, arch, tokenizer.eot_id)
    phase("comparing logits")
    diffs = max_logit_diff(gpt, hf_model, probe_inputs(tokenizer, gpt.cfg.vocab_size, gpt.cfg.block_size))
    require_match(diffs, f"export of {info['path']} as {type(hf_model).__name__}")
    out = Path(out_dir)
    _prepare_out(out, overwrite)
    phase("writing safetensors")
    hf_model.save_pretrained(out, safe_serialization=True)
    phase("writing the tokenizer and model card")
    save_tokenizer(tokenizer, out, gpt.cfg.block_size)
    run = run_record(Path(workdir) if workdir else None, info.get("run_id"))
    (out / "README.md").write_text(model_card(type(hf_model).__name__, info, run, diffs))
    return {"out": str(out), "architecture": arch, "hf_class": type(hf_model).__name__, "logit_diff": diffs,
            "files": sorted(p.name for p in out.iterdir()), "seconds": time.perf_counter() - t0,
            "run_id": info.get("run_id"), "step": info["step"]}  # fmt: skip
