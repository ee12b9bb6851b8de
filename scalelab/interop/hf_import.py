"""Import a Hugging Face causal LM folder as a scalelab run, so that every command works on it.

`import_hf(DIR)` reads a local GPT-2 folder (any `GPT2LMHeadModel` with tanh-GELU), or a Llama-family
folder (Llama, Mistral, Qwen2, and Qwen3 whose QK-norm weights are one, as scalelab exports them;
see `hf_llama` for what is converted and what is refused), from safetensors only; converts the
weights (`hf_weights.from_hf_state`), checks scalelab's logits against the HF model's on random ids
and real text, and writes a verified checkpoint `step_00000000` in a new run of the store (status
`completed`, summary `imported_from`). `sample`, `probe`,
`pm train --base run:ID`, `export hf` then take the run id or name like any other.

A name that is not a local folder is passed to `from_pretrained` as a hub id (downloaded by
transformers, which needs network access); the tests use local folders only.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path

from scalelab.errors import UserError
from scalelab.interop.check import max_logit_diff, probe_inputs, require_match
from scalelab.interop.hf_export import require_transformers
from scalelab.interop.hf_llama import settle_from_weights
from scalelab.interop.hf_weights import from_hf_state, gpt_config_from_hf
from scalelab.names import check_name


def _load_hf(source: str):
    """(config, model) from a local folder (safetensors only, never pickled weights) or a hub id."""
    transformers = require_transformers()
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} has no config.json; give a Hugging Face model folder (save_pretrained output)")
        if not any(path.glob("*.safetensors")):
            raise UserError(f"{path} has no .safetensors weights; scalelab never unpickles .bin files: convert them "
                            "with save_pretrained(..., safe_serialization=True)")  # fmt: skip
    try:
        config = transformers.AutoConfig.from_pretrained(str(path) if path.exists() else source)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the model config of {source!r} ({str(e)[:300]})") from None
    gcfg = gpt_config_from_hf(config)  # refuses what scalelab cannot compute, before loading weights
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path) if path.exists() else source,
                                                              use_safetensors=True)  # fmt: skip
    if gcfg.recipe == "modern":
        gcfg = settle_from_weights(gcfg, model.state_dict(), bool(getattr(config, "tie_word_embeddings", False)))
    return config, gcfg, model.float().eval()


def _tokenizer(source: str, model_cfg):
    from scalelab.data import tokenizers as tk

    path = Path(source).expanduser()
    if not (path / "tokenizer.json").is_file():
        raise UserError(f"{source} has no tokenizer.json (a fast tokenizer); save it with "
                        "AutoTokenizer.from_pretrained(...).save_pretrained(DIR) and import again")  # fmt: skip
    tokenizer = tk.load_pretrained(str(path))
    if tokenizer.vocab_size > model_cfg.vocab_size:
        raise UserError(f"the tokenizer of {source} has {tokenizer.vocab_size} tokens, more than the model's "
                        f"{model_cfg.vocab_size}; the folder mixes two models")  # fmt: skip
    return tokenizer


def default_name(source: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).expanduser().resolve().name).strip("-.") or "model"
    return f"hf-{base}"[:80]


def run_config(name: str, gcfg, tokenizer_dir: Path) -> dict:
    """A RunConfig describing the imported model exactly (data: its own tokenizer; no training done)."""
    from scalelab.config import RunConfig

    model = {"recipe": gcfg.recipe, "n_layer": gcfg.n_layer, "n_head": gcfg.n_head, "n_embd": gcfg.n_embd,
             "block_size": gcfg.block_size, "vocab_size": gcfg.vocab_size, "bias": gcfg.bias, "mlp": gcfg.mlp,
             "tie_embeddings": gcfg.tie_embeddings, "norm_eps": gcfg.norm_eps,
             "mlp_hidden": gcfg.mlp_hidden}  # fmt: skip
    if gcfg.recipe == "modern":  # left unset at scalelab's defaults, so that the config hash stays the usual one
        model |= {k: v for k, v in (("qk_norm", gcfg.qk_norm), ("embed_norm", gcfg.embed_norm)) if not v}
        model |= {"rope_theta": gcfg.rope_theta} if gcfg.rope_theta != 10000.0 else {}
    return RunConfig(name=name, data={"tokenizer": str(tokenizer_dir)}, model=model, train={"iters": 1})


def import_hf(source: str | Path, workdir: str | Path, name: str | None = None, context: int | None = None,
              phase: Callable[[str], None] | None = None) -> dict:  # fmt: skip
    """Import `source` as a new run of `workdir`'s store; return
    {"run_id", "name", "checkpoint", "architecture", "logit_diff", "params", "seconds"}.

    `context` caps the model's positions (a Llama folder may declare 131,072, and sampling preallocates a
    key/value cache of that length). `phase(text)` is told what is being done (for a progress line)."""
    from scalelab.flops import flops_per_token
    from scalelab.model.gpt import GPT
    from scalelab.store import RunStore
    from scalelab.train.checkpoint import save_checkpoint

    phase = phase or (lambda text: None)
    t0 = time.perf_counter()
    source = str(source)
    name = check_name(name or default_name(source), "--name")
    phase("loading the Hugging Face model")
    hf_cfg, gcfg, hf_model = _load_hf(source)
    if context is not None:  # a shorter context computes the same on the positions it keeps
        if context < 1:
            raise UserError(f"--context {context}: give a positive number of positions")
        gcfg = dataclasses.replace(gcfg, block_size=min(context, gcfg.block_size))
    tokenizer = _tokenizer(source, gcfg)
    phase("converting the weights")
    gpt = GPT(gcfg)
    n_kv = getattr(hf_cfg, "num_key_value_heads", None)
    state = from_hf_state(hf_model.state_dict(), gcfg, n_kv)
    if "wpe.weight" in state:
        state["wpe.weight"] = state["wpe.weight"][: gcfg.block_size]
    gpt.load_state_dict(state, strict=True)
    phase("comparing logits")
    diffs = max_logit_diff(gpt, hf_model, probe_inputs(tokenizer, gcfg.vocab_size, gcfg.block_size))
    require_match(diffs, f"import of {source} ({hf_cfg.model_type})")

    phase("writing the checkpoint")
    store = RunStore.in_workdir(workdir)
    try:
        counts = gpt.param_counts()
        fpt = flops_per_token(counts["params_flops"], gcfg.n_layer, gcfg.n_head, gcfg.head_dim, gcfg.block_size)
        placeholder = run_config(name, gcfg, Path("."))
        run_id = store.create_run(name, placeholder.to_dict(), placeholder.config_hash(), group="imported",
                                  params=counts["params"], params_nonembed=counts["params_nonembed"],
                                  flops_per_token=fpt)  # fmt: skip
        run_dir = store.run_dir(run_id)
        tok_dir = run_dir / "tokenizer"
        tok_dir.mkdir(parents=True)
        (tok_dir / "tokenizer.json").write_text(tokenizer.tok.to_str())
        cfg = run_config(name, gcfg, tok_dir.resolve())
        store.update_config(run_id, cfg.to_dict(), cfg.config_hash())
        state = {"imported_from": source, "hf_model_type": hf_cfg.model_type, "state": {"step": 0, "tokens": 0}}
        ckpt = save_checkpoint(run_dir / "ckpt", 0, gpt, tokenizer, state)
        summary = {"run_id": run_id, "name": name, "status": "completed", "imported_from": source,
                   "hf_model_type": hf_cfg.model_type, "logit_diff": diffs, "params": counts["params"],
                   "params_nonembed": counts["params_nonembed"], "iters": 0, "run_dir": str(run_dir)}  # fmt: skip
        now = time.time()
        store.update_run(run_id, status="completed", started_at=now, finished_at=now, summary=summary)
    finally:
        store.close()
    return {"run_id": run_id, "name": name, "checkpoint": str(ckpt), "architecture": gcfg.recipe,
            "hf_model_type": hf_cfg.model_type, "logit_diff": diffs, "params": counts["params"],
            "seconds": time.perf_counter() - t0}  # fmt: skip
