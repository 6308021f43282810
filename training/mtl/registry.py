"""Registry of MTL methods: `names()`, `get(name)`, `levels(name)`, `build(name, num_tasks, level=...)`.

Methods register their class with `@register`. A paper's name for a method at a fixed level (MGDA-UB is
MGDA at the feature level) is an alias, `alias("mgda_ub", "mgda", Level.FEATURE, note)`: `build` gives
the target method at that level, `names()` lists methods only and `aliases()` the aliases.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

from training.mtl.base import Level, MTLMethod, hyperparameters

_REGISTRY: dict[str, type[MTLMethod]] = {}
_ALIASES: dict[str, Alias] = {}
_LOADED = False


@dataclass(frozen=True)
class Alias:
    """`name` = method `target` at `level` (its paper's name for that level); `note` says so."""

    name: str
    target: str
    level: Level
    note: str


def register(cls: type[MTLMethod]) -> type[MTLMethod]:
    """Class decorator: add a method under `cls.name` (lower-case, unique)."""
    name = cls.name
    if not name or name != name.lower():
        raise ValueError(f"MTL method {cls.__qualname__} needs a lower-case `name`, got {name!r}")
    if (name in _REGISTRY and _REGISTRY[name] is not cls) or name in _ALIASES:
        raise ValueError(f"MTL method name {name!r} registered twice ({_REGISTRY.get(name)} and {cls})")
    _REGISTRY[name] = cls
    return cls


def alias(name: str, target: str, level: Level, note: str) -> None:
    """Register `name` as method `target` fixed at `level`."""
    entry = Alias(name, target, level, note)
    if name != name.lower() or name in _REGISTRY or _ALIASES.get(name, entry) != entry:
        raise ValueError(f"MTL alias {name!r}: must be lower-case and not a method or another alias")
    _ALIASES[name] = entry


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
    """The registered methods (aliases not included)."""
    _load_all()
    return sorted(_REGISTRY)


def aliases() -> dict[str, Alias]:
    _load_all()
    return dict(sorted(_ALIASES.items()))


def _key(name: str) -> str:
    _load_all()
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY and key not in _ALIASES:
        known = sorted([*_REGISTRY, *_ALIASES])
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"mtl.name: unknown MTL method {name!r}{hint} Known: {', '.join(known)}")
    return key


def canonical(name: str) -> str:
    """The registered spelling of a method name or alias (lower case, '_' for '-')."""
    return _key(name)


def get(name: str) -> type[MTLMethod]:
    """The method class of a method name or alias; an unknown name suggests the closest ones."""
    key = _key(name)
    return _REGISTRY[_ALIASES[key].target] if key in _ALIASES else _REGISTRY[key]


def levels(name: str) -> tuple[Level, ...]:
    """The levels `name` runs at: an alias's one level, a method's `levels` (() = level-free)."""
    key = _key(name)
    return (_ALIASES[key].level,) if key in _ALIASES else _REGISTRY[key].levels


def build(name: str, num_tasks: int, level: Level | str | None = None, **hparams: Any) -> MTLMethod:
    """Build a method; unknown hyperparameters are an error listing the accepted ones.

    `level=None` uses the method's `default_level` (an alias's level for an alias); asking an alias for
    another level is an error quoting its note.
    """
    key = _key(name)
    cls = get(key)
    if key in _ALIASES:
        fixed = _ALIASES[key]
        if level is not None and Level(level) is not fixed.level:
            raise ValueError(f"mtl.level: {fixed.note}")
        level = fixed.level
    accepted = hyperparameters(cls)
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ValueError(
            f"mtl: method {key!r} has no hyperparameter(s) {unknown}; accepted: "
            + (", ".join(f"{k}={v[1]!r}" for k, v in accepted.items()) or "none")
        )
    if not cls.levels or level is None:
        level = cls.default_level  # level-free methods ignore it
    return cls(num_tasks, level=level, **hparams)
