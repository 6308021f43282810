"""rosbag2 in and out without a ROS install (pure-Python `rosbags`; no rclpy, no torch).

- types.py     the ROS 2 Kilted type store plus mtl_grasp_msgs registered from its .msg files;
               empty messages by type name, (de)serialisation
- offline.py   `perception_offline`: run the Detector over a recorded bag (same pairing, conversions,
               parameters file and outputs as the node) into an output bag (mcap or sqlite3)
- dataset.py   a MetaGraspNet-format folder as a camera bag; detections of an output bag as
               evaluation predictions
"""
