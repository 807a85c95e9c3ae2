"""video3d: position-aware Video-3D LLM for robots.

Subpackages (none of them imports ROS, except ``video3d_ros.ros``):

* ``geometry``  – depth → world points, per-token coordinates, voxels, boxes.
* ``keyframes`` – offline max-coverage sampling and the online rolling buffer.
* ``model``     – the Video-3D LLM, checkpoint IO and the cached inference engine.
* ``scenes``    – procedural rooms rendered to posed RGB-D.
* ``ros``       – the rclpy layer: message conversion and wiring only.
"""

__version__ = "0.1.0"
