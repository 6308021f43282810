"""ament_python package `mtl_grasp`: runtime (mtl_grasp/) + training backend (training/)."""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mtl_grasp"

RUNTIME = [
    "numpy>=1.26",
    "opencv-python-headless>=4.9",
    "onnxruntime>=1.18",
    "pycocotools>=2.0.7",
    "pyyaml>=6.0",
    "tqdm>=4.66",
]
TRAIN = [
    "torch>=2.6",
    "torchvision>=0.21",
    "onnx>=1.16",
    "onnxscript>=0.2",
    "tensorboard>=2.16",
    "matplotlib>=3.8",
    "scipy>=1.11",
]
# The corruption robustness evaluation (docs/robustness.md): the 15 common image corruptions of
# Hendrycks & Dietterich from `imagecorruptions`. The maintained fork `imagecorruptions-imaug` (same
# `imagecorruptions` module and corruption definitions) is used because `imagecorruptions` 1.1.2 (2020, the
# last release) fails on current numpy / scikit-image / setuptools; see docs/robustness.md.
# The fork itself is installed with `pip install --no-deps imagecorruptions-imaug` (scripts/bootstrap.sh):
# it declares `opencv-python` (the GUI build), which would install a second `cv2` over
# `opencv-python-headless` and make `import cv2` need libGL. Its other requirements are listed here.
ROBUSTNESS = ["scikit-image>=0.22", "numba>=0.60", "pillow>=10"]
ROS = [
    "ros-kilted-rclpy[fastrtps]",
    "ros-kilted-sensor-msgs",
    "ros-kilted-std-msgs",
    "ros-kilted-geometry-msgs",
    "ros-kilted-visualization-msgs",
    "ros-kilted-std-srvs",
    "ros-kilted-diagnostic-msgs",
    "ros-kilted-lifecycle-msgs",
    "ros-kilted-builtin-interfaces",
]
# Wheels needed to generate and build the mtl_grasp_msgs interface package with cmake in a venv
# (several are needed but not declared by the ROS wheels; see docs/ros.md).
ROS_BUILD = [
    "ros-kilted-rosidl-default-generators",
    "ros-kilted-rosidl-core-generators",
    "ros-kilted-ament-cmake",
    "ros-kilted-ament-cmake-python",
    "ros-kilted-ament-cmake-include-directories",
    "ros-kilted-ament-cmake-ros-core",
    "ros-kilted-ament-package",
    "catkin-pkg",
]
# Physically simulated scenes (`python -m training synth`, the default engine; docs/data.md).
# pybullet ships binary wheels for CPython 3.10 and 3.11 only (x86_64 manylinux); on 3.12/3.13 pip
# compiles it from the source distribution (needs a C++ compiler; checked on 3.12.1, ~50 min on 2 busy cores).
DATA = ["pybullet>=3.2.5"]
# Offline rosbag2 tools (perception_offline): pure Python, no ROS install, no rclpy (docs/ros.md).
BAG = ["rosbags>=0.11"]
# scikit-learn: an independent confusion matrix for the dense-metric tests (tests/test_dense_metrics.py)
DEV = [
    "pytest>=8", "pytest-timeout>=2.3", "ruff>=0.6", "mypy>=1.10", "colcon-common-extensions",
    "scikit-learn>=1.4",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["mtl_grasp", "mtl_grasp.*", "training", "training.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (os.path.join("share", PACKAGE, "launch"), glob("launch/*.launch.py")),
        (os.path.join("share", PACKAGE, "config"), glob("config/*.yaml") + glob("config/*.xml")),
        (os.path.join("share", PACKAGE, "config", "train"), glob("config/train/*.yaml")),
    ],
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=RUNTIME,
    extras_require={
        "train": TRAIN + ROBUSTNESS,
        "data": DATA,
        "robustness": ROBUSTNESS,
        "ros": ROS,
        "ros-build": ROS_BUILD,
        "bag": BAG,
        "dev": DEV,
        # optional reference implementations for tests/test_mtl_reference_torchjd.py (docs/mtl.md)
        "ref": ["torchjd==0.18.0"],
    },
    zip_safe=True,
    maintainer="mtl_grasp developers",
    maintainer_email="mtl-grasp@example.invalid",
    description="RGB-D amodal instance perception for bin picking, with a multi-task-learning trainer",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "perception_node = mtl_grasp.ros.perception_node:console_main",
            "mgn_replayer = mtl_grasp.ros.replayer:main",
            "perception_offline = mtl_grasp.bag.offline:main",
            "mtl-train = training.cli:main",
        ],
    },
)
