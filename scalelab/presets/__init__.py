"""Named configs shipped with scalelab (TOML files in this folder)."""

from __future__ import annotations

import sys
from importlib import resources

from scalelab.config import RunConfig, apply_overrides, build_config
from scalelab.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def load_raw(name: str) -> dict:
    path = resources.files(__name__) / f"{name}.toml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r}; available: {', '.join(names())}")
    return tomllib.loads(path.read_text())


def load_preset(name: str, overrides: list[str] | None = None) -> RunConfig:
    raw = apply_overrides(load_raw(name), overrides)
    return build_config(raw, origin=f"preset {name}")
