"""MetaGraspNet on-disk format: synthetic generator, reader, COCO conversion, splits.

Modules: :mod:`.synth` (generator), :mod:`.reader` (views -> typed samples), :mod:`.coco` (UOAIS-style
COCO JSON), :mod:`.splits` (scene splits). Bad data raises :class:`DataError`. See docs/data.md.
"""

from mtl_grasp.data.errors import DataError

__all__ = ["DataError"]
