"""The training configuration: a typed dataclass tree loaded from YAML plus dotted overrides.

    cfg = load_config("config/train/synthetic.yaml", ["optim.lr=1e-3", "mtl.hparams.c=0.4"])

Every key of the YAML file and of an override must name a field of the tree; values are checked against
the field's annotation (int, float, bool, str, `X | None`, tuples, lists, dicts, nested dataclasses).
Errors name the dotted key, the expected type and the value found, so a typo fails before any work.
`mtl.hparams` is the one free-form mapping: its keys are the method's constructor arguments and are
validated by `training.mtl.build` (which lists the accepted ones).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training import families
from training.diagnostics.config import DiagnosticsConfig
from training.families.dense_config import DenseConfig
from training.model.config import ModelConfig

AMP_DTYPES = ("bf16", "none")  # fp16 would need a GradScaler threaded through every MTL method
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("constant", "cosine", "multistep")
OPTIMIZERS = ("sgd", "adam", "signsgd")


@dataclass
class SynthConfig:
    """Generate a synthetic MetaGraspNet-layout dataset at `data.root` when it does not exist yet
    (`mtl_grasp.data.generate`; docs/data.md)."""

    scenes: int = 0  # 0 = never generate (real data)
    image_size: int = 128  # size of the generated camera images (square)
    seed: int = 0
    engine: str = "physics"  # physics (pybullet piles, the `data` extra) | analytic (2.5-D fast fixture)
    views: int = 1  # viewpoints per scene (view 0 top-down)
    objects: tuple[int, int] = (5, 40)  # articles dropped per scene, inclusive (physics engine)
    workers: int = 0  # generator processes; 0 = the CPU cores (physics engine)


@dataclass
class DataConfig:
    root: str = "data/metagraspnet"
    train_split: str = "train"
    val_split: str = "val"
    splits_file: str | None = None  # None = <root>/splits.json (see mtl_grasp.data.reader.select_split)
    augment: bool = True  # random flip + colour jitter on the training split
    class_agnostic: bool = True  # one class "object" (UOAIS); else MetaGraspNet categories
    min_visible_area: int = 1  # objects with fewer visible pixels are not targets (nor COCO GT)
    num_workers: int = 2  # data-loading worker processes (0 = load in the training process)
    pin_memory: bool = True  # only used on CUDA
    synth: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class OptimConfig:
    """The standard optimiser (a method may replace it through `configure_optimizer`)."""

    name: str = "sgd"  # sgd | adam | signsgd
    lr: float = 1e-4
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    method_lr: float | None = None  # lr of the method's own parameters (UW's log-variances); None = lr


@dataclass
class ScheduleConfig:
    """Learning rate: linear warm-up from `warmup_factor * lr` to `lr`, then `name`."""

    name: str = "constant"  # constant | cosine | multistep
    warmup_steps: int = 1000
    warmup_factor: float = 0.001
    milestones: tuple[int, ...] = ()  # multistep: steps at which lr *= gamma
    gamma: float = 0.1
    min_lr_factor: float = 0.0  # cosine: final lr = min_lr_factor * lr


@dataclass
class MTLConfig:
    name: str = "ew"
    level: str = "parameter"  # parameter | feature (ignored by loss weightings)
    hparams: dict[str, Any] = field(default_factory=dict)
    # task -> loss names; empty = one task per loss (the 7 tasks of the study)
    tasks: dict[str, list[str]] = field(default_factory=dict)
    batched_vjp: bool = False  # one vmap'ed VJP for all tasks instead of T (more memory, faster on GPU)


@dataclass
class LoopConfig:
    steps: int = 90000
    batch_size: int = 4  # global batch (split across ranks under torchrun)
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "bf16"  # autocast dtype on CUDA: bf16 | none (CPU always runs fp32)
    checkpoint_every: int = 1000  # steps; 0 = only at the end
    keep_checkpoints: bool = False  # also keep checkpoints/step_<N>.pt (last.pt is always written)
    eval_every: int = 0  # steps; 0 = only at the end
    eval_at_start: bool = False  # evaluate the untrained model too (step 0 row in eval.csv)
    eval_max_images: int = 0  # 0 = the whole split
    max_nonfinite: int = 5  # consecutive skipped steps that stop the run
    progress: bool = True  # tqdm progress bar
    threads: int = 0  # torch intra-op threads; 0 = torch's default


@dataclass
class TrainConfig:
    """The whole run.

    `family` names the model family (`training.families.FAMILIES`): "amodal" (the default, the RGB-D
    bin-picking detector: `model` is `training.model.config.ModelConfig`, `data.synth` its synthetic
    scenes) or "dense" (NYU-v2 / CityScapes: the `dense` section, `training.families.dense_config`).
    A section of the other family must stay at its defaults (`validate` names it), so a config never
    sets keys that nothing reads.
    """

    seed: int = 0
    run_dir: str = "runs/train"
    family: str = "amodal"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    mtl: MTLConfig = field(default_factory=MTLConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    # FD / GDS / GMS / conflict ratio every `diagnostics.every` steps (0 = off; see training.diagnostics)
    diagnostics: DiagnosticsConfig = field(default_factory=lambda: DiagnosticsConfig(every=0))
    dense: DenseConfig = field(default_factory=DenseConfig)

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range value (types are checked when loading)."""
        checks = [
            ("train.amp", self.train.amp, AMP_DTYPES),
            ("train.device", self.train.device, DEVICES),
            ("schedule.name", self.schedule.name, SCHEDULES),
            ("optim.name", self.optim.name, OPTIMIZERS),
            ("mtl.level", self.mtl.level, ("parameter", "feature")),
            ("data.synth.engine", self.data.synth.engine, ("physics", "analytic")),
        ]
        for key, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{key}: expected one of {list(allowed)}, got {value!r}")
        positive = {
            "train.steps": self.train.steps,
            "train.batch_size": self.train.batch_size,
            "optim.lr": self.optim.lr,
            "train.max_nonfinite": self.train.max_nonfinite,
        }
        for key, number in positive.items():
            if number <= 0:
                raise ValueError(f"{key}: expected a positive number, got {number!r}")
        non_negative = {
            "train.checkpoint_every": self.train.checkpoint_every,
            "train.eval_every": self.train.eval_every,
            "train.eval_max_images": self.train.eval_max_images,
            "schedule.warmup_steps": self.schedule.warmup_steps,
            "data.num_workers": self.data.num_workers,
            "data.synth.scenes": self.data.synth.scenes,
            "data.synth.workers": self.data.synth.workers,
            "optim.weight_decay": self.optim.weight_decay,
            "optim.grad_clip": self.optim.grad_clip,
            "train.threads": self.train.threads,
        }
        for key, number in non_negative.items():
            if number < 0:
                raise ValueError(f"{key}: expected a value >= 0, got {number!r}")
        if not 0.0 < self.schedule.warmup_factor <= 1.0:
            raise ValueError(
                f"schedule.warmup_factor: expected a value in (0, 1], got {self.schedule.warmup_factor!r}"
            )
        self.model.validate()
        self._validate_family()

    def _validate_family(self) -> None:
        """The family exists and the other family's sections are untouched (their keys would be ignored)."""
        if self.family not in families.FAMILIES:
            families.get(self.family)  # raises, suggesting the closest name
        if self.family == "dense":
            self.dense.validate()
            d, default = self.data, DataConfig()
            ignored = [
                ("model", self.model != ModelConfig(), "dense.model"),
                ("data.synth", d.synth != default.synth, "dense.synth"),
                ("data.splits_file", d.splits_file != default.splits_file, "the train/val folders"),
                ("data.class_agnostic", d.class_agnostic != default.class_agnostic, None),
                ("data.min_visible_area", d.min_visible_area != default.min_visible_area, None),
            ]
            for key, changed, instead in ignored:
                if changed:
                    hint = f"; set {instead} instead" if instead else ""
                    raise ValueError(f"{key}: read only by the amodal family, not by family 'dense'{hint}")
        elif self.dense != DenseConfig():
            raise ValueError(f"dense: read only by family 'dense'; this config's family is {self.family!r}")


# ---- conversion to and from plain data ---------------------------------------------------------


def to_dict(cfg: Any) -> Any:
    """A dataclass tree as plain YAML/JSON-able data (tuples become lists)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    return cfg


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce_union(value: Any, tp: Any, key: str) -> Any:
    """`X | Y | None`: None when allowed, else the first member type that accepts the value."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, key)
        except ValueError:
            continue
    raise ValueError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _coerce_scalar(value: Any, tp: type, key: str) -> Any:
    """bool, int, float (numeric strings accepted) and str; no silent conversion between them."""
    if tp is bool and not isinstance(value, bool):
        raise ValueError(f"{key}: expected a bool (true/false), got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key}: expected an int, got {value!r}")
    if tp is str and not isinstance(value, str):
        raise ValueError(f"{key}: expected a string, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept numeric strings for floats only.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ValueError(f"{key}: expected a float, got {value!r}")
        return float(value)
    return value


def _coerce_container(value: Any, tp: Any, key: str) -> Any:
    """tuple[X, Y] / tuple[X, ...] / list[X] from a list, dict[str, X] from a mapping."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        vt = args[1] if args else Any
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{key}: expected a list, got {value!r}")
    if origin is list:
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ValueError(f"{key}: expected a list of {len(args)} values, got {value!r}")
    return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp` and convert lists to tuples etc.; errors name `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key)
    if tp in (bool, int, float, str):
        return _coerce_scalar(value, tp, key)
    if origin in (tuple, list, dict):
        return _coerce_container(value, tp, key)
    raise ValueError(f"{key}: unsupported annotation {tp!r}")  # pragma: no cover - programming error


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in values if k not in names]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ValueError(
            f"{where}{unknown[0]}: unknown config key; known keys of {prefix or 'the config'} are {names}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a nested dataclass's own validation (ModelConfig)
        raise ValueError(f"{prefix or 'config'}: {exc}") from exc


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """tree[a][b][c] = value for key 'a.b.c', creating dicts on the way (types are checked later)."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"{key}: {part!r} is a value, not a section; cannot set a key below it")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'optim.lr=1e-3' -> ('optim.lr', 0.001); the value is parsed as YAML ('[1, 2]', 'true', 'null')."""
    if "=" not in text:
        raise ValueError(f"override {text!r}: expected dotted.key=value (e.g. optim.lr=1e-3)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ValueError(f"override {text!r}: empty key part; expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"{key}: cannot parse value {raw!r}: {exc}") from None
    return key, value


def config_from_dict(values: Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """Build and validate a TrainConfig from plain data plus dotted overrides."""
    tree = to_dict(dict(values))
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    cfg = _build(TrainConfig, tree, "")
    cfg.validate()
    return cfg


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a YAML file (None = all defaults) and apply `overrides` ('dotted.key=value')."""
    values: Mapping[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"--config: no such file {str(p)!r}")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"--config {str(p)!r}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ValueError(
                f"--config {str(p)!r}: expected a mapping at the top level, got {type(loaded).__name__}"
            )
        values = loaded
    return config_from_dict(values, overrides)


def dump_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable by `load_config`)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
