"""Typed run configuration: loaded from TOML, overridable with `--set a.b=c`, saved with every run.

A `RunConfig` holds everything needed to re-run a run exactly: the data (source, tokenizer,
split), the model (recipe, shape) and the training recipe (optimizer, schedule, budget, seed).
Unknown keys and wrong types raise `UserError` naming the key and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scalelab.errors import UserError
from scalelab.names import check_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# value ranges, checked when a config is built (before any run is recorded)
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Rate = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda|cuda:\d+|mps")


class DataConfig(_Strict):
    """Where the tokens come from and how they are split."""

    source: str = "stdlib"
    """'stdlib' (the running Python's standard library, embedded default), a file, folder or glob
    of text, a .jsonl/.jsonl.gz file, or 'hf:NAME[:CONFIG]' / 'hf-disk:PATH' for HF datasets."""
    text_field: str = "text"
    """Field holding the text in JSONL / Hugging Face records."""
    tokenizer: str = "byte"
    """'byte' (256 symbols + end-of-document), 'char' (characters seen in the corpus),
    'bpe' (trained on the corpus with HF tokenizers), or a folder holding tokenizer.json."""
    vocab_size: Positive = 4096
    """Target vocabulary of the 'bpe' tokenizer (ignored otherwise)."""
    split: Literal["auto", "documents", "contiguous"] = "auto"
    """'documents': each document goes wholly to train, val or test by a hash of its id;
    'contiguous': the token stream is cut into leading train, then val, then test;
    'auto': documents when the corpus has at least 100 of them, else contiguous."""
    val_fraction: Fraction = 0.05
    test_fraction: Fraction = 0.05
    max_documents: Positive | None = None
    """Keep only the first N documents (sorted by id): for quick experiments."""
    cache_dir: str | None = None
    """Where token shards are cached; default: <workdir>/cache."""
    repeat_fraction: Fraction = 0.0
    """Share f of the training tokens drawn from a small repeated subset (Hernandez et al. 2022); 0: none."""
    repeat_epochs: Positive = 1
    """Times R the subset is seen; it holds f * D / R tokens of a D-token run."""
    repeat_unit: Literal["chunk", "document"] = "chunk"
    """The repeated subset is made of fixed-length chunks or of whole documents."""
    train_tokens: Positive | None = None
    """Keep only the first D tokens of the training split, cycled (a dataset of D unique tokens); None: all."""
    tasks: dict[str, float] = Field(default_factory=dict)
    """Capability tasks mixed into the train split: task -> share of the training tokens, e.g.
    {"add2": 0.05} (Ganguli et al. 2022; tasks in scalelab/data/task_mix.py); {}: none."""
    eval_tasks: list[str] = Field(default_factory=list)
    """Capability tasks scored (exact match, answer log-prob) at every evaluation of a sweep or study run."""

    @model_validator(mode="after")
    def _check_fractions(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} leaves no "
                             "training data; keep their sum below 1")  # fmt: skip
        return self


class ModelConfig(_Strict):
    """The GPT's recipe and shape. `size` picks a rung of the ladder (see model/sizes.py)."""

    recipe: Literal["gpt2", "modern"] = "gpt2"
    size: str | None = None
    """A ladder name ('3xs' ... '6xl') or a parameter count ('1e6'); sets n_layer/n_head/n_embd."""
    n_layer: Positive = 4
    n_head: Positive = 4
    n_embd: Positive = 128
    block_size: Positive = 256
    """Context length in tokens."""
    vocab_size: Positive | None = None
    """Set from the tokenizer when None; a larger value pads the embedding (e.g. 50304)."""
    dropout: Fraction = 0.0
    bias: bool | None = None
    """Biases in linear layers and norms; default: True for gpt2, False for modern."""
    mlp: Literal["gelu", "gelu_exact", "relu2", "swiglu"] | None = None
    """MLP nonlinearity; default: gelu for gpt2, relu2 for modern. 'gelu' is GPT-2's tanh approximation,
    'gelu_exact' the exact x * Phi(x) (Hendrycks & Gimpel 2016), which BERT and nanoGPT's model use."""
    logit_softcap: Rate | None = None
    """If set, logits = cap * tanh(logits / cap) (modern recipe)."""
    tie_embeddings: bool | None = None
    """Share input and output embeddings; default: True for gpt2, False for modern."""
    qk_norm: bool | None = None
    """modern: RMS-normalise queries and keys (default True; False for Llama-family models)."""
    embed_norm: bool | None = None
    """modern: RMS-normalise the input embedding (default True; False for Llama-family models)."""
    rope_theta: Rate | None = None
    """modern: the rotary base; default 10000 (Llama 3 uses 500000)."""
    norm_eps: Rate | None = None
    """Epsilon of the norms; default 1e-5 (gpt2 LayerNorm), 1e-6 (modern RMSNorm)."""
    mlp_hidden: Positive | None = None
    """MLP width; default 4 x n_embd, or 8/3 x n_embd rounded up to 8 for swiglu."""

    @field_validator("size", mode="before")
    @classmethod
    def _size_as_text(cls, v: Any) -> Any:
        """`--set model.size=1e4` arrives as a number: keep it as the text of that number."""
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return f"{v:g}"
        return v

    @model_validator(mode="after")
    def _check_shape(self) -> ModelConfig:
        if self.size is None and self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class TrainConfig(_Strict):
    """Optimizer, schedule, budget and bookkeeping."""

    iters: Positive | None = 2000
    """Optimizer steps; if None, derived from `tokens`."""
    tokens: Positive | None = None
    """Training-token budget; used when `iters` is None."""
    batch_size: Positive = 12
    """Sequences per micro-batch (per process)."""
    grad_accum: Positive = 1
    optimizer: Literal["adamw", "muon"] = "adamw"
    lr: Rate = 1e-3
    min_lr: NonNegativeFloat = 1e-4
    muon_lr: Rate = 0.02
    """Learning rate of Muon's 2-D weights (the rest use `lr` with AdamW)."""
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: NonNegativeFloat = 0.1
    grad_clip: NonNegativeFloat = 1.0
    """Clip the global gradient norm to this value; 0 disables."""
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_iters: NonNegative = 100
    decay_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2
    """For 'wsd': the final fraction of steps over which lr decays linearly to min_lr."""
    eval_every: Positive = 500
    eval_batches: Positive = 20
    final_eval_batches: Positive | None = None
    """Batches for the last evaluation; default: eval_batches."""
    ckpt_every: Positive = 500
    log_every: Positive = 10
    sampling: Literal["random", "sequential"] = "random"
    """'random': random contiguous windows; 'sequential': epoch-exact pass over the stream."""
    device: str = "auto"
    """'auto' (cuda if available), 'cpu', 'cuda', 'cuda:N' or 'mps'."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Autocast dtype: 'auto' is bfloat16 on CUDA and float32 on CPU; 'bfloat16' autocasts on the CPU too (fast
    where it has AMX or AVX512-BF16; short-context attention stays float32 there). See train/precision.py."""
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    """torch.compile mode when `compile` is on (autotuning modes compile for minutes)."""
    seed: int = 1337
    eval_seed: int = 1337
    """Seed of the fixed evaluation windows, kept apart from `seed` so that runs differing only in
    seed are scored on the same validation tokens."""
    threads: Positive | None = None
    """torch intra-op threads on CPU; default: all cores."""
    matmul_precision: Literal["highest", "high", "medium"] | None = None
    """float32 matmul precision (`torch.set_float32_matmul_precision`) for the run; None: torch's setting,
    'highest' unless changed. 'medium' lets matmuls use bfloat16 inputs with float32 accumulation: 2-3x faster
    matmuls on a CPU with AMX or AVX512-BF16; 'high' allows TF32 on CUDA. See train/precision.py."""
    trackers: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    """Experiment trackers mirroring the store (local/offline, in the work directory): see interop/trackers.py."""
    init_from: str | None = None
    """Start from these weights (optimizer fresh): a run id / name, a run folder, a checkpoint folder, or
    'run:NAME[@CONFIG_HASH]' (the completed run of that name in the same group, for a study's later stage)."""
    early_stop_patience: Positive | None = None
    """Stop after this many evaluations without a new best validation loss; None: train all steps."""

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if not DEVICE_PATTERN.fullmatch(v):
            raise ValueError("use 'auto', 'cpu', 'cuda', 'cuda:N' (N = 0, 1, ...) or 'mps'")
        return v

    @model_validator(mode="after")
    def _check_budget(self) -> TrainConfig:
        if self.iters is None and self.tokens is None:
            raise ValueError("set either train.iters or train.tokens")
        return self


REPEAT_MIXER_VERSION = 2
"""Bumped when the repetition mixer draws other tokens for the same config: old runs are not reused."""


UNHASHED_WHEN_NONE = (
    ("data", "train_tokens"),
    ("train", "init_from"),
    ("train", "early_stop_patience"),
    ("model", "qk_norm"),
    ("model", "embed_norm"),
    ("model", "rope_theta"),
    ("model", "norm_eps"),
    ("model", "mlp_hidden"),
    ("train", "matmul_precision"),
)
"""Fields left out of the config hash while None, so that configs written before they existed keep their hash."""


class RunConfig(_Strict):
    """One training run: name, data, model, training. Saved verbatim with the run."""

    name: str = "run"
    """Label of the run (letters, digits, '._-=+'); runs are stored by id, several may share a name."""
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _as_value_error(check_name, v, "name")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def config_hash(self) -> str:
        """Hash of everything that changes the result (the name excluded)."""
        d = self.to_dict()
        d.pop("name", None)
        d["train"].pop("log_every", None)
        d["train"].pop("threads", None)
        d["train"].pop("trackers", None)
        for section, key in UNHASHED_WHEN_NONE:  # fields added later: old configs keep their hash
            if d[section].get(key, 0) is None:
                d[section].pop(key)
        for key in ("tasks", "eval_tasks"):  # new fields: a config that leaves them empty keeps its old hash
            if not d["data"].get(key):
                d["data"].pop(key, None)
        if self.data.repeat_fraction > 0:  # the token-exact repeated subset (v2) trains other tokens than v1's
            d["data"]["repeat_mixer"] = REPEAT_MIXER_VERSION
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def stamp_input(spec: str) -> str:
    """What identifies an input in a config hash: a file's content hash (so that a work directory can
    move), a folder's path and mtime, else the string itself (a keyword, a run reference). An 'hf:'
    prefix is looked through."""
    p = Path(spec.removeprefix("hf:"))
    try:
        if p.is_file():
            digest = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()[:16]
        if p.exists():
            return f"{p.resolve()}:{int(p.stat().st_mtime)}"
    except OSError:
        pass
    return spec


def _as_value_error(check, *args):
    """Run a check that raises UserError inside a pydantic validator (which reports ValueErrors)."""
    try:
        return check(*args)
    except UserError as e:
        raise ValueError(str(e)) from None


# ----------------------------------------------------------------------------- loading


def parse_value(text: str) -> Any:
    """Parse the right side of `--set key=value` as a TOML value, else keep it a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `a.b=c` overrides to a nested dict (in place) and return it."""
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}; for example --set train.lr=3e-4")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {key}: {p!r} is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(value.strip())
    return raw


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid field names at a location inside RunConfig."""
    cls: Any = model
    for part in loc[:-1]:
        field = cls.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        cls = field.annotation
    return sorted(cls.model_fields)


def format_validation_error(err: ValidationError, model: type[BaseModel], origin: str) -> str:
    """Turn pydantic's errors into one message that names each key and what was expected."""
    lines = [f"invalid configuration ({origin}):"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(x) for x in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = _valid_keys(model, loc)
            lines.append(f"  unknown key '{key}'; valid keys here: {', '.join(valid)}")
        else:
            got = e.get("input")
            lines.append(f"  '{key}': {e['msg']} (got {got!r})")
    return "\n".join(lines)


def build_config(raw: dict[str, Any], origin: str = "config", cls: type[BaseModel] = RunConfig) -> Any:
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        raise UserError(format_validation_error(err, cls, origin)) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}; pass the path of a TOML file")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{p} is not valid TOML: {e}") from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML file (or start from defaults when path is None) and apply overrides."""
    raw = read_toml(path) if path is not None else {}
    apply_overrides(raw, overrides)
    return build_config(raw, origin=str(path) if path else "defaults")
