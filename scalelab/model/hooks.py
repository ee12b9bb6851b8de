"""Named hook points and a `run_with_cache` API, in the manner of TransformerLens.

Every `HookPoint` is an identity module that gets a stable name from where it sits, with the
`hook_` prefix dropped: `embed`, `blocks.{i}.resid_pre`, `blocks.{i}.attn.pattern`,
`blocks.{i}.attn.z`, `blocks.{i}.attn_out`, `blocks.{i}.resid_mid`, `blocks.{i}.mlp_out`,
`blocks.{i}.resid_post`, `final`. Probes read activations by these names, never by reaching into
module internals. A hook may also return a replacement value (an intervention).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch
import torch.nn as nn

HookFn = Callable[[torch.Tensor, str], torch.Tensor | None]


class HookPoint(nn.Module):
    """Identity; calls the functions attached to it with (value, name)."""

    def __init__(self):
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []

    def active(self) -> bool:
        return bool(self.fns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns:
            out = fn(x, self.name)
            if out is not None:
                x = out
        return x


class HookedMixin:
    """Adds hook naming, `hook_points()`, `run_with_hooks()` and `run_with_cache()` to a model."""

    def name_hooks(self) -> None:
        for name, mod in self.named_modules():  # type: ignore[attr-defined]
            if isinstance(mod, HookPoint):
                parent, _, leaf = name.rpartition(".")
                leaf = leaf.removeprefix("hook_")
                mod.name = f"{parent}.{leaf}" if parent else leaf

    def hook_points(self) -> dict[str, HookPoint]:
        return {m.name: m for m in self.modules() if isinstance(m, HookPoint)}  # type: ignore[attr-defined]

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]]):
        """Attach (name or name-filter, fn) pairs for the duration of a `with` block."""
        points = self.hook_points()
        attached: list[tuple[HookPoint, HookFn]] = []
        try:
            for key, fn in fwd_hooks:
                names = [n for n in points if key(n)] if callable(key) else [key]
                for n in names:
                    if n not in points:
                        raise KeyError(f"no hook point {n!r}; valid names include {sorted(points)[:8]} ...")
                    points[n].fns.append(fn)
                    attached.append((points[n], fn))
            yield self
        finally:
            for point, fn in attached:
                point.fns.remove(fn)

    def run_with_hooks(self, *args, fwd_hooks=(), **kwargs):
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)  # type: ignore[operator]

    def run_with_cache(self, *args, names: Iterable[str] | Callable[[str], bool] | None = None, **kwargs):
        """Run forward and return (output, {hook name: activation}) for the selected hook points."""
        points = self.hook_points()
        if names is None:
            selected = list(points)
        elif callable(names):
            selected = [n for n in points if names(n)]
        else:
            selected = list(names)
        cache: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, name: str) -> None:
            cache[name] = x.detach()

        with self.hooks((n, save) for n in selected):
            out = self(*args, **kwargs)  # type: ignore[operator]
        return out, cache
