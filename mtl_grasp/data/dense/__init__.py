"""Dense multi-task benchmarks on disk (NYU-v2, CityScapes): layouts, readers, synthetic stand-ins.

Modules: :mod:`.layout` (the one owner of file names, units and dataset specs), :mod:`.sample`
(:class:`DenseSample`), :mod:`.checks` (validation, :class:`EmptyTargetError`), :mod:`.npy_reader`
(MTAN/LibMTL per-sample ``.npy`` files), :mod:`.cityscapes` (official CityScapes folders),
:mod:`.raycast` + :mod:`.scenes` + :mod:`.synth` (the synthetic generator). numpy and opencv only.
See docs/dense.md.
"""

from mtl_grasp.data.dense.checks import EmptyTargetError
from mtl_grasp.data.dense.cityscapes import CityscapesReader
from mtl_grasp.data.dense.layout import DATASETS, IGNORE_LABEL, DenseDatasetSpec, dataset_spec
from mtl_grasp.data.dense.npy_reader import NpyDenseReader
from mtl_grasp.data.dense.sample import DenseReader, DenseSample

__all__ = [
    "DATASETS",
    "IGNORE_LABEL",
    "CityscapesReader",
    "DenseDatasetSpec",
    "DenseReader",
    "DenseSample",
    "EmptyTargetError",
    "NpyDenseReader",
    "dataset_spec",
    "open_reader",
]


def open_reader(dataset: str, root: str, split: str, **kwargs: object) -> NpyDenseReader | CityscapesReader:
    """The reader of ``dataset`` (a name of `DATASETS`) over ``root``; ``kwargs`` go to its constructor."""
    spec = dataset_spec(dataset)
    if spec.layout == "cityscapes":
        kwargs.setdefault("size", spec.size)
        kwargs.setdefault("num_classes", spec.num_classes)
        return CityscapesReader(root, split, **kwargs)  # type: ignore[arg-type]
    return NpyDenseReader(root, split, spec, **kwargs)  # type: ignore[arg-type]
