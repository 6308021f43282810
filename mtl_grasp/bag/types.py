"""The message types of the bag tools: rosbags' ROS 2 Kilted store plus mtl_grasp_msgs, registered
from the package's own .msg files (the source tree's, else an installed share/mtl_grasp_msgs/msg).

rosbags messages are dataclasses without defaults and want numpy arrays for numeric arrays; `new`
builds a message with every field at its ROS default, and `serialize` first coerces what the shared
builders assign (lists, bytes, Python numbers) to the types the CDR serialiser expects. So the same
builders that fill rclpy messages in the node fill rosbags messages here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

STORAGES = ("mcap", "sqlite3")  # rosbag2 storage plugins this package writes
MSG_PACKAGE = "mtl_grasp_msgs"
MSG_NAMES = ("Instance", "InstanceArray")
_NUMPY = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "octet": np.uint8,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "float32": np.float32, "float64": np.float64,
}


def msg_dir() -> Path:
    """The folder with mtl_grasp_msgs' .msg files: source tree, then installed share directories."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / MSG_PACKAGE / "msg"]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(p) / "share" / MSG_PACKAGE / "msg" for p in prefixes]
    for c in candidates:
        if all((c / f"{n}.msg").is_file() for n in MSG_NAMES):
            return c
    raise FileNotFoundError(f"{MSG_PACKAGE} .msg files not found; looked in {[str(c) for c in candidates]}")


class BagTypes:
    """A rosbags Typestore with mtl_grasp_msgs, and message helpers by ROS 2 type name."""

    def __init__(self) -> None:
        self.store = get_typestore(Stores.ROS2_KILTED)
        folder = msg_dir()
        types: dict = {}
        for name in MSG_NAMES:
            text = (folder / f"{name}.msg").read_text()
            types.update(get_types_from_msg(text, f"{MSG_PACKAGE}/msg/{name}"))
        self.store.register(types)

    def new(self, typename: str) -> Any:
        """A message of `typename` ("pkg/msg/Name") with every field at its default."""
        _, fields = self.store.fielddefs[typename]
        return self.store.types[typename](**{name: self._default(*desc) for name, desc in fields})

    def _default(self, nodetype: Nodetype, detail: Any) -> Any:
        if nodetype == Nodetype.BASE:
            return {"string": "", "bool": False}.get(detail[0], 0.0 if "float" in detail[0] else 0)
        if nodetype == Nodetype.NAME:
            return self.new(detail)
        (sub_type, sub_detail), length = detail
        if sub_type == Nodetype.BASE and sub_detail[0] in _NUMPY:
            return np.zeros(length if nodetype == Nodetype.ARRAY else 0, _NUMPY[sub_detail[0]])
        if nodetype == Nodetype.ARRAY:
            return [self._default(sub_type, sub_detail) for _ in range(length)]
        return []

    def coerce(self, msg: Any, typename: str) -> Any:
        """`msg` with numeric arrays as numpy arrays of the field's dtype (in place; returned)."""
        _, fields = self.store.fielddefs[typename]
        for name, (nodetype, field_detail) in fields:
            detail: Any = field_detail  # its shape depends on nodetype (rosbags' field descriptions)
            value = getattr(msg, name)
            if nodetype == Nodetype.NAME:
                self.coerce(value, detail)
            elif nodetype == Nodetype.BASE and detail[0] == "bool":
                setattr(msg, name, bool(value))
            elif nodetype in (Nodetype.ARRAY, Nodetype.SEQUENCE):
                (sub_type, sub_detail), _ = detail
                if sub_type == Nodetype.BASE and sub_detail[0] in _NUMPY:
                    dtype = _NUMPY[sub_detail[0]]
                    if isinstance(value, bytes | bytearray | memoryview):
                        value = np.frombuffer(value, np.uint8).view(dtype)
                    setattr(msg, name, np.asarray(value, dtype))
                elif sub_type == Nodetype.NAME:
                    for item in value:
                        self.coerce(item, sub_detail)
        return msg

    def serialize(self, msg: Any, typename: str) -> bytes:
        """CDR bytes of `msg` (after `coerce`)."""
        return bytes(self.store.serialize_cdr(self.coerce(msg, typename), typename))

    def deserialize(self, raw: bytes | memoryview, typename: str) -> Any:
        return self.store.deserialize_cdr(raw, typename)


def open_writer(path: str | os.PathLike, storage: str) -> Any:
    """An opened rosbags `Writer` of a new rosbag2 (format version 9) at `path` with `storage`."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise ValueError(f"storage: expected one of {list(STORAGES)}, got {storage!r}")
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    writer = Writer(Path(path), version=9, storage_plugin=plugin)
    writer.open()
    return writer
