"""Registry of MTL methods: `names()`, `build(name, num_tasks, level=..., **hparams)`, `get(name)`."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any

from training.mtl.base import Level, MTLMethod, hyperparameters

_REGISTRY: dict[str, type[MTLMethod]] = {}
_LOADED = False


def register(cls: type[MTLMethod]) -> type[MTLMethod]:
    """Class decorator: add a method under `cls.name` (lower-case, unique)."""
    name = cls.name
    if not name or name != name.lower():
        raise ValueError(f"MTL method {cls.__qualname__} needs a lower-case `name`, got {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"MTL method name {name!r} registered twice ({_REGISTRY[name]} and {cls})")
    _REGISTRY[name] = cls
    return cls


def _load_all() -> None:
    """Import every module of training.mtl.methods so their @register decorators run."""
    global _LOADED
    if _LOADED:
        return
    import training.mtl.methods as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _LOADED = True


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> type[MTLMethod]:
    _load_all()
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"mtl.name: unknown MTL method {name!r}{hint} Known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def build(name: str, num_tasks: int, level: Level | str | None = None, **hparams: Any) -> MTLMethod:
    """Build a method; unknown hyperparameters are an error listing the accepted ones.

    `level=None` uses the method's `default_level` (feature for the -UB aliases, else parameter).
    """
    cls = get(name)
    accepted = hyperparameters(cls)
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"mtl: method {cls.name!r} has no hyperparameter(s) {unknown}; accepted: "
            + (", ".join(f"{k}={v[1]!r}" for k, v in accepted.items()) or "none")
        )
    if not cls.levels or level is None:
        level = cls.default_level  # level-free methods ignore it
    return cls(num_tasks, level=level, **hparams)
