"""Model families: what plugs into the engine (`training.engine.protocols`) for one kind of network.

    family = training.families.get("amodal")      # the RGB-D bin-picking detector (the default)

A family provides its batch type, its `MTLModel` (features(batch) -> Z, heads(Z, batch) -> named
losses), its datasets and its evaluator; `training.engine.assembly` builds a run from it. Add a family
by writing `training/families/<name>.py` with a class implementing `ModelFamily` and one line below.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

#: family name -> "module:ClassName" (imported on first use)
FAMILIES = {"amodal": "training.families.amodal:AmodalFamily"}


def get(name: str = "amodal") -> Any:
    """A new instance of the family `name`; an unknown name suggests the closest ones."""
    if name not in FAMILIES:
        close = difflib.get_close_matches(name, list(FAMILIES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"model family: unknown family {name!r}{hint} Known: {', '.join(sorted(FAMILIES))}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)()
