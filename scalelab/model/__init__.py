"""The GPT family: recipes, the size ladder, hook points and sampling. Knows no files."""

from scalelab.model.generate import generate
from scalelab.model.gpt import GPT, GPTConfig, KVCache
from scalelab.model.sizes import LADDER, resolve, shape_for_size

__all__ = ["GPT", "GPTConfig", "KVCache", "LADDER", "generate", "resolve", "shape_for_size"]
