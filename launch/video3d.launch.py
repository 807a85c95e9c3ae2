"""Bring up video3d on a ROS 2 robot.

    ros2 launch video3d_ros video3d.launch.py
    ros2 launch video3d_ros video3d.launch.py synthetic_camera:=true rviz:=true
    ros2 launch video3d_ros video3d.launch.py model_path:=/models/Video3D-LLM-LLaVA-Qwen-Uniform-32 \
        params_file:=my_params.yaml

Remap the node's inputs to your camera driver, e.g. for a RealSense:
    color/image:=/camera/camera/color/image_raw
    color/camera_info:=/camera/camera/color/camera_info
    depth/image:=/camera/camera/aligned_depth_to_color/image_raw
(launch arguments color_topic / depth_topic / color_info_topic / depth_info_topic).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

ARGS = {
    "synthetic_camera": ("false", "start the synthetic RGB-D camera (a generated room) as input"),
    "rviz": ("false", "start RViz with the video3d configuration"),
    "params_file": (PathJoinSubstitution([FindPackageShare("video3d_ros"), "config", "video3d.yaml"]),
                    "parameter YAML for video3d_node"),
    "model_path": ("", "checkpoint directory; empty = the embedded default model"),
    "world_frame": ("map", "fixed frame of poses, boxes and markers"),
    "color_topic": ("color/image", "colour image topic (rgb8/bgr8/rgba8/bgra8/mono8)"),
    "color_info_topic": ("color/camera_info", "colour camera_info topic"),
    "depth_topic": ("depth/image", "depth image topic (16UC1 mm or 32FC1 m, registered to colour)"),
    "depth_info_topic": ("depth/camera_info", "depth camera_info topic"),
}


def generate_launch_description() -> LaunchDescription:
    cfg = {name: LaunchConfiguration(name) for name in ARGS}
    declared = [DeclareLaunchArgument(name, default_value=default, description=doc)
                for name, (default, doc) in ARGS.items()]
    node = LifecycleNode(
        package="video3d_ros", executable="video3d_node", name="video3d_node", namespace="",
        output="screen",
        parameters=[cfg["params_file"], {"model_path": cfg["model_path"], "world_frame": cfg["world_frame"]}],
        remappings=[("color/image", cfg["color_topic"]), ("color/camera_info", cfg["color_info_topic"]),
                    ("depth/image", cfg["depth_topic"]), ("depth/camera_info", cfg["depth_info_topic"])],
    )
    camera = Node(package="video3d_ros", executable="synthetic_camera", name="synthetic_camera",
                  output="screen", parameters=[{"world_frame": cfg["world_frame"]}],
                  condition=IfCondition(cfg["synthetic_camera"]))
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                arguments=["-d", PathJoinSubstitution([FindPackageShare("video3d_ros"), "rviz", "video3d.rviz"])],
                condition=IfCondition(cfg["rviz"]))
    return LaunchDescription([*declared, camera, node, rviz])
