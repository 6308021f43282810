"""Model families: what plugs into the engine (`training.engine.protocols`) for one kind of network.

    family = training.families.for_config(cfg)    # the family `cfg.family` names, built for cfg
    family = training.families.get("amodal")      # the RGB-D bin-picking detector (the default)

A family provides its batch type, its `MTLModel` (features(batch) -> Z, heads(Z, batch) -> named
losses), its datasets and its evaluator; `training.engine.assembly` builds a run from it. Families:
"amodal" (`training.families.amodal`) and "dense" (`training.families.dense`: NYU-v2 / CityScapes,
docs/dense.md). Add a family by writing `training/families/<name>.py` with a class implementing
`ModelFamily` (its constructor takes the `TrainConfig`, or None for the defaults: a family's loss
names may depend on the config, e.g. the dense tasks trained) and one line below.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

#: family name -> "module:ClassName" (imported on first use)
FAMILIES = {
    "amodal": "training.families.amodal:AmodalFamily",
    "dense": "training.families.dense:DenseFamily",
}


def get(name: str = "amodal", cfg: Any = None) -> Any:
    """A new instance of the family `name` for `cfg` (a `training.config.TrainConfig`, which imports this
    package; None = the family's defaults); an unknown name suggests the closest ones."""
    if name not in FAMILIES:
        close = difflib.get_close_matches(name, list(FAMILIES), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"family: unknown model family {name!r}{hint} Known: {', '.join(sorted(FAMILIES))}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)(cfg)


def for_config(cfg: Any) -> Any:
    """The family `cfg.family` names, built for `cfg` (a `training.config.TrainConfig`)."""
    return get(cfg.family, cfg)
