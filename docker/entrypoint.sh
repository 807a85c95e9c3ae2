#!/usr/bin/env bash
# Source ROS and the video3d workspace, then run the command (default: the launch file).
set -e
source "/opt/ros/${ROS_DISTRO}/setup.bash"
source /ws/install/setup.bash
exec "$@"
