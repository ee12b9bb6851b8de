"""The assistant study's runs: language models (stage 0); their context-distilled students and the PMs
on the plain and the prompted model (stage 1); the PMs on the distilled students (stage 2).

The data are built here once per design into ``<workdir>/studies/assistant/<hash>/``: the corpus (a
share of the documents written in capitals, the format the prompt asks for) and the PM comparisons,
split by document into train and test, each also written with the prompt before every pair (the
"prompted" starting point of preference modelling: the PM reads the prompt, as in Askell et al. 2021).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scalelab.atomic import write_text
from scalelab.studies.assistant.config import Config
from scalelab.sweep.spec import PlannedRun, run_counts

CORPUS_KEYS = ("corpus", "corpus_documents", "upper_fraction", "seed")
DATA_KEYS = (*CORPUS_KEYS, "prompt", "context", "pm_target", "pm_pairs", "pm_documents", "pm_test_fraction")


def _folder(config: Config, workdir: Path, keys: tuple[str, ...]) -> Path:
    from scalelab.prompting import load_prompt

    key = {k: getattr(config, k) for k in keys}
    if "prompt" in key:
        key["prompt"] = load_prompt(config.prompt).digest
    return Path(workdir) / "studies" / "assistant" / hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


def data_folder(config: Config, workdir: Path) -> Path:
    """The PM comparison files (they depend on the prompt and the context)."""
    return _folder(config, workdir, DATA_KEYS)


def corpus_path(config: Config, workdir: Path) -> Path:
    """The corpus (its own folder: the language models do not change when the PM data do)."""
    return _folder(config, workdir, CORPUS_KEYS) / "corpus.jsonl"


def _is_upper(doc_id: str, fraction: float, seed: int) -> bool:
    return int.from_bytes(hashlib.sha1(f"{seed}:{doc_id}".encode()).digest()[:8], "big") / 2**64 < fraction


def _write_once(path: Path, lines: list[str]) -> None:
    write_text(path, "".join(line + "\n" for line in lines))


def build_data(config: Config, workdir: Path) -> dict[str, Path]:
    """The corpus and the four comparison files (plain / prompted x train / test), built once."""
    from scalelab.align.pm_data import build_automatic, split_set
    from scalelab.data.comparisons import save_comparisons
    from scalelab.data.sources import iter_documents
    from scalelab.prompting import load_prompt

    folder = data_folder(config, workdir)
    names = ("pm_train", "pm_test", "pm_train_prompted", "pm_test_prompted")
    paths = {n: folder / f"{n}.jsonl" for n in names} | {"info": folder / "data.json",
                                                         "corpus": corpus_path(config, workdir)}  # fmt: skip
    if paths["info"].is_file():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    docs = list(iter_documents(config.corpus, max_documents=config.corpus_documents))
    upper = [_is_upper(d.id, config.upper_fraction, config.seed) for d in docs]
    if not paths["corpus"].is_file():
        paths["corpus"].parent.mkdir(parents=True, exist_ok=True)
        _write_once(paths["corpus"], [json.dumps({"id": d.id, "text": d.text.upper() if u else d.text})
                                      for d, u in zip(docs, upper)])  # fmt: skip
    prompt = load_prompt(config.prompt).text
    room = config.context - 3 - len(prompt.encode())

    def fits(c) -> bool:  # both texts fit beside the prompt, and neither is empty (a corruption may delete all)
        return all(r.strip() and len((c.prompt + r).encode()) + 1 <= room for r in (c.chosen, c.rejected))

    pairs = build_automatic(config.pm_target, seed=config.seed, max_pairs=config.pm_pairs, fits=fits,
                            max_chars=max(16, int(0.8 * room)), max_documents=config.pm_documents)  # fmt: skip
    train, test = split_set(pairs.comparisons, config.pm_test_fraction, config.seed)
    from dataclasses import replace

    for split, rows in (("train", train), ("test", test)):
        save_comparisons(rows, paths[f"pm_{split}"])
        save_comparisons([replace(c, prompt=prompt + c.prompt) for c in rows], paths[f"pm_{split}_prompted"])
    info = {"documents": len(docs), "upper_documents": int(sum(upper)), "pm_pairs": len(pairs.comparisons),
            "pm_train": len(train), "pm_test": len(test), "pm_filtered_long": pairs.n_filtered_long,
            "prompt_bytes": len(prompt.encode())}  # fmt: skip
    (paths["info"]).write_text(json.dumps(info))
    return paths


def lm_config(config: Config, size: str, corpus: Path):
    """The language model of one size (the alignment studies' shared recipe, `studies.pretrain`)."""
    from scalelab.studies.pretrain import small_lm_config

    return small_lm_config(f"lm-{size}", size, str(corpus), context=config.context, iters=config.pretrain_iters,
                           batch=config.pretrain_batch, seed=config.seed, device=config.device,
                           threads=config.threads)  # fmt: skip


def plan(config: Config, workdir: str | Path) -> list[PlannedRun]:
    """lm-<size> (stage 0); distill-<size>, pm-plain-<size>, pm-prompted-<size> (1); pm-distilled-<size> (2)."""
    from scalelab.align.distill import DistillSpec
    from scalelab.align.pm_run import PMRunSpec
    from scalelab.align.pm_train import PMTrainConfig

    data = build_data(config, Path(workdir))
    common = {"group": config.name, "device": config.device, "threads": config.threads}
    runs: list[PlannedRun] = []
    for size in config.sizes:
        lm = lm_config(config, size, data["corpus"])
        params, nonembed, fpt = run_counts(lm, 257)  # byte tokenizer
        it = config.pretrain_iters
        runs.append(PlannedRun(lm.name, lm, {"role": "lm", "size": size}, params, nonembed, fpt,
                               it * config.pretrain_batch * config.context, it, kind="lm", stage=0))  # fmt: skip
        student = DistillSpec(model=f"run:{lm.name}", prompt=config.prompt, data=str(data["corpus"]),
                              top_k=config.top_k, window=config.distill_window, n_windows=config.distill_windows,
                              n_heldout=32, steps=config.distill_steps, batch_size=16, lr=config.distill_lr,
                              ckpt_every=config.distill_steps, seed=config.seed, base_config_hash=lm.config_hash(),
                              name=f"distill-{size}", **common)  # fmt: skip
        runs.append(PlannedRun(student.name, student, {"role": "distill", "size": size}, params, nonembed, fpt,
                               config.distill_steps * 16 * config.distill_window, config.distill_steps,
                               kind="distill", stage=1))  # fmt: skip
        train = PMTrainConfig(objective="ranked", epochs=config.pm_epochs, min_steps=config.pm_min_steps,
                              batch_size=config.pm_batch, lr=config.pm_lr, seed=config.seed,
                              warmup_steps=min(10, config.pm_min_steps // 2))  # fmt: skip
        for start, base, stage in (("plain", lm, 1), ("prompted", lm, 1), ("distilled", student, 2)):
            suffix = "_prompted" if start == "prompted" else ""
            spec = PMRunSpec(data=str(data[f"pm_train{suffix}"]), objective="ranked", format="generic",
                             test=str(data[f"pm_test{suffix}"]), train=train, name=f"pm-{start}-{size}",
                             base=f"run:{base.name}", base_config_hash=base.config_hash(), **common)  # fmt: skip
            runs.append(PlannedRun(spec.name, spec, {"role": "pm", "size": size, "start": start}, params, nonembed,
                                   fpt, 0, 0, kind="pm", stage=stage))  # fmt: skip
    return runs
