"""mtl_grasp.ros: the ROS 2 perception node and its DDS-free building blocks (see docs/ros.md).

- images.py         sensor_msgs/Image <-> numpy (encodings, step padding, byte order; no cv_bridge)
- sync.py           RGB-depth pairing by timestamp with slop (no message_filters)
- keep_latest.py    one-slot mailbox between callbacks and the inference worker
- instances.py      Detections -> mtl_grasp_msgs/InstanceArray (cropped masks) and back
- visualization.py  overlay image, visible label image, MarkerArray
- diagnostics.py    fps / latency / drop statistics -> diagnostic_msgs
- parameters.py     the node's parameter table (defaults only in config/perception.yaml)
- perception_node.py  the lifecycle node; `main()` is the `perception_node` console script
- replayer.py       `mgn_replayer`: a MetaGraspNet folder as a camera stream
- demo.py           replayer + node + listener in one process
- domain.py         free ROS_DOMAIN_ID reservation for isolated runs
"""
