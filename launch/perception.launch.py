"""Launch mtl_grasp's perception node on a robot (needs launch_ros: a ROS 2 distro, not the pip wheels).

    ros2 launch mtl_grasp perception.launch.py model_path:=/models/amodal.onnx \
        rgb_topic:=/camera/color/image_raw depth_topic:=/camera/aligned_depth_to_color/image_raw \
        camera_info_topic:=/camera/color/camera_info

The node configures and activates itself (its main() triggers the lifecycle transitions), so a plain
launch_ros Node action is enough. Parameter defaults come from config/perception.yaml (params_file);
the launch arguments below override only what is usually site-specific.

Large images across processes: the node runs with the Fast DDS profile config/fastdds_shm.xml
(`fastdds_profile`; 32 MiB shared-memory segment). The camera driver's process needs the same
profile: export FASTDDS_DEFAULT_PROFILES_FILE before launching it (docs/ros.md, "Transport").
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("mtl_grasp")
    default_params = os.path.join(share, "config", "perception.yaml")
    default_profile = os.path.join(share, "config", "fastdds_shm.xml")
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameter file (defaults of every parameter)"),
        DeclareLaunchArgument("model_path", default_value="model.onnx",
                              description="exported ONNX model (python -m training export)"),
        DeclareLaunchArgument("score_threshold", default_value="0.5", description="minimum detection score"),
        DeclareLaunchArgument("rgb_topic", default_value="/camera/color/image_raw",
                              description="RGB image topic (rgb8, bgr8, bgra8, rgba8 or mono8)"),
        DeclareLaunchArgument("depth_topic", default_value="/camera/aligned_depth_to_color/image_raw",
                              description="depth registered to the RGB camera (16UC1 mm or 32FC1 m)"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/color/camera_info",
                              description="CameraInfo of the RGB camera (3-D pick candidates, ~/markers)"),
        DeclareLaunchArgument("fastdds_profile", default_value=default_profile,
                              description="Fast DDS XML profile of the node (FASTDDS_DEFAULT_PROFILES_FILE); "
                              "the camera driver needs the same one for large best-effort images"),
    ]
    node = Node(
        package="mtl_grasp",
        executable="perception_node",
        name="perception_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        additional_env={"FASTDDS_DEFAULT_PROFILES_FILE": LaunchConfiguration("fastdds_profile")},
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model_path": LaunchConfiguration("model_path"),
                "score_threshold": LaunchConfiguration("score_threshold"),
            },
        ],
        remappings=[
            ("rgb/image", LaunchConfiguration("rgb_topic")),
            ("depth/image", LaunchConfiguration("depth_topic")),
            ("rgb/camera_info", LaunchConfiguration("camera_info_topic")),
        ],
    )
    return LaunchDescription([*args, node])
