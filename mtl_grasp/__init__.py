"""mtl_grasp: RGB-D amodal instance perception for robotic bin picking.

This package is what a robot needs (data formats, evaluation, the ONNX runtime and the ROS 2 node).
It never imports torch or the `training` package.
"""

__version__ = "0.1.0"
