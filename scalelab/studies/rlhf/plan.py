"""The RLHF study's runs, stage by stage (a later stage names an earlier run as ``run:<name>`` + config hash).

- stage 0, kind "lm": the policies and PM backbones, pre-trained on the embedded corpus (`lm-<size>`).
- stage 1, kind "gold-pm": proxy PMs trained on gold-labelled samples of the largest policy
  (`scalelab.align.gold_pm`): the train PM and the test PM on the even / odd halves of one labelled
  set (`pm-<size>-train`, `pm-<size>-test`), smaller PM sizes on the train half, smaller label
  budgets (`pm-<size>-n<N>`), and the first online round's PM (`pm-online-r0`).
- stage 2, kind "rl": PPO of every policy size against the train PM, PPO of the largest policy against
  every proxy PM, RLOO / DPO / best-of-N against the train PM (`<algo>-p<policy>-<pm>`); every run
  scores its evaluations with the gold reward and the test PM (`pm_0`). And online round 0.
- stages 3, 4, ...: online round r: a PM on every label so far plus new labels sampled from round
  r-1's policy (stage 2r + 1), then PPO continuing round r-1's policy against it (stage 2r + 2).

Equal labels: the online rounds together query the labeller as often as the offline train PM
(`n_labels`), and take as many PPO steps as the offline PPO run (`steps`).
"""

from __future__ import annotations

from pathlib import Path

from scalelab.studies.rlhf.config import Config
from scalelab.sweep.spec import PlannedRun


def lm_config(config: Config, size: str):
    """The LM pre-training run of one policy / PM backbone (the alignment studies' shared recipe)."""
    from scalelab.studies.pretrain import small_lm_config

    return small_lm_config(f"lm-{size}", size, config.corpus, context=config.context, iters=config.pretrain_iters,
                           batch=config.pretrain_batch, seed=config.seed, device=config.device,
                           threads=config.threads, max_documents=config.corpus_max_documents)  # fmt: skip


def _pm_train(config: Config) -> dict:
    return {"objective": "ranked", "epochs": config.pm_epochs, "min_steps": config.pm_min_steps,
            "batch_size": config.pm_batch, "lr": config.pm_lr, "seed": config.seed,
            "warmup_steps": min(10, config.pm_min_steps // 2)}  # fmt: skip


def plan(config: Config, workdir: str | Path) -> list[PlannedRun]:
    """Every run of the study (see the module docstring)."""
    from scalelab.align.gold_pm import GoldPMSpec, LabelSource, offered
    from scalelab.align.rl.config import RLRunSpec
    from scalelab.sweep.spec import run_counts

    runs: dict[str, PlannedRun] = {}
    counts: dict[str, tuple[int, int, int]] = {}
    policy = config.policy_sizes[-1]
    pm_size = config.pm_sizes[-1]
    common = {"group": config.name, "threads": config.threads}

    def add(name: str, cfg, axes: dict, size: str, kind: str, stage: int, iters: int, tokens: int = 0) -> None:
        params, nonembed, fpt = counts[size]
        runs[name] = PlannedRun(name, cfg, axes, params, nonembed, fpt, tokens, iters, kind=kind, stage=stage)

    def ref(name: str) -> str:
        return f"run:{name}"

    for size in sorted({*config.policy_sizes, *config.pm_sizes}, key=[*config.policy_sizes, *config.pm_sizes].index):
        cfg = lm_config(config, size)
        counts[size] = run_counts(cfg, 257)
        tokens = config.pretrain_iters * config.pretrain_batch * config.context
        add(cfg.name, cfg, {"role": "lm", "size": size}, size, "lm", 0, config.pretrain_iters, tokens)

    base_policy = f"lm-{policy}"
    label_common = {"gold": config.gold, "label_temperature": config.label_temperature, "prompts": "builtin",
                    "n_prompts": config.n_prompts, "eval_prompts": config.eval_prompts,
                    "max_new_tokens": config.max_new_tokens, "temperature": config.temperature}  # fmt: skip

    def source(policy_run: str, n_pairs: int, seed: int, half=None, max_offered=None) -> LabelSource:
        return LabelSource(policy=ref(policy_run), policy_hash=runs[policy_run].config_hash, n_pairs=n_pairs,
                           seed=seed, half=half, max_offered=max_offered)  # fmt: skip

    def gold_pm(name: str, size: str, sources: list[LabelSource], axes: dict, stage: int) -> None:
        pm = {"base": ref(f"lm-{size}"), "base_config_hash": runs[f"lm-{size}"].config_hash, "objective": "ranked",
              "test_fraction": 0.2, "train": _pm_train(config), "device": config.device}  # fmt: skip
        spec = GoldPMSpec(name=name, sources=sources, pm=pm, **label_common, **common)
        labels = sum(offered(s) for s in sources)
        add(name, spec, {"role": "pm", "size": size, "labels": labels, **axes}, size, "gold-pm", stage, 0)

    n = config.n_labels
    base = dict(n_pairs=2 * n, seed=config.seed)  # one labelled set: even pairs train, odd pairs test
    for size in config.pm_sizes:
        gold_pm(f"pm-{size}-train", size, [source(base_policy, **base, half=0)], {"half": "train"}, 1)
    gold_pm(f"pm-{pm_size}-test", pm_size, [source(base_policy, **base, half=1)], {"half": "test"}, 1)
    for amount in config.data_amounts:
        if amount < n:
            gold_pm(f"pm-{pm_size}-n{amount}", pm_size, [source(base_policy, **base, half=0, max_offered=2 * amount)],
                    {"half": "train"}, 1)  # fmt: skip
    rounds = config.online_rounds if config.online_rounds > 1 else 0
    per_round = n // rounds if rounds else 0
    if rounds:
        gold_pm("pm-online-r0", pm_size, [source(base_policy, **base, half=0, max_offered=2 * per_round)],
                {"half": "train", "round": 0}, 1)  # fmt: skip

    def rl(name: str, policy_run: str, pm_run: str, algo: str, axes: dict, stage: int, steps: int,
           reference: str | None = None) -> None:  # fmt: skip
        refs = [policy_run, pm_run, f"pm-{pm_size}-test"] + ([reference] if reference else [])
        spec = RLRunSpec(
            name=name, policy=ref(policy_run), reference=ref(reference) if reference else None, pm=ref(pm_run),
            gold=config.gold, reward="pm",
            eval_pms=[ref(f"pm-{pm_size}-test")], run_hashes={ref(r): runs[r].config_hash for r in refs},
            algo=algo, prompts="builtin", n_prompts=config.n_prompts, eval_prompts=config.eval_prompts,
            steps=steps, batch_size=config.batch_size, max_new_tokens=config.max_new_tokens,
            temperature=config.temperature, lambda_kl=config.lambda_kl, rloo_k=config.rloo_k,
            bon_n=config.bon_n, lr=config.dpo_lr if algo == "dpo" else config.lr, eval_every=config.eval_every,
            ckpt_every=steps, seed=config.seed, device=config.device, **common,
        )  # fmt: skip
        size = policy_run.removeprefix("lm-") if policy_run.startswith("lm-") else policy
        add(name, spec, {"role": "rl", "algo": algo, "policy_size": size, "pm": pm_run, **axes}, size, "rl", stage,
            steps)  # fmt: skip

    main_pm = f"pm-{pm_size}-train"
    if "ppo" in config.algos:
        for size in config.policy_sizes:
            rl(f"ppo-p{size}-{main_pm}", f"lm-{size}", main_pm, "ppo", {"pm_size": pm_size}, 2, config.steps)
        for size in config.pm_sizes[:-1]:
            rl(f"ppo-p{policy}-pm-{size}-train", base_policy, f"pm-{size}-train", "ppo", {"pm_size": size}, 2,
               config.steps)  # fmt: skip
        for amount in config.data_amounts:
            if amount < n:
                rl(f"ppo-p{policy}-pm-{pm_size}-n{amount}", base_policy, f"pm-{pm_size}-n{amount}", "ppo",
                   {"pm_size": pm_size, "labels": amount}, 2, config.steps)  # fmt: skip
    for algo in config.algos:
        if algo != "ppo":
            rl(f"{algo}-p{policy}-{main_pm}", base_policy, main_pm, algo, {"pm_size": pm_size}, 2, config.steps)
    if rounds:
        steps = max(1, config.steps // rounds)
        rl("ppo-online-r0", base_policy, "pm-online-r0", "ppo", {"round": 0, "pm_size": pm_size}, 2, steps)
        for r in range(1, rounds):
            sources = [source(base_policy, **base, half=0, max_offered=2 * per_round)]
            sources += [source(f"ppo-online-r{k}", per_round, config.seed + 100 * (k + 1)) for k in range(r)]
            gold_pm(f"pm-online-r{r}", pm_size, sources, {"half": "train", "round": r}, 2 * r + 1)
            rl(f"ppo-online-r{r}", f"ppo-online-r{r - 1}", f"pm-online-r{r}", "ppo", {"round": r, "pm_size": pm_size},
               2 * r + 2, steps, reference=base_policy)  # KL from the original model, as the offline run's  # fmt: skip
    return list(runs.values())
