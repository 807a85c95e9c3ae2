"""video3d_ros: an ament_python ROS 2 package that is also pip-installable.

On a ROS 2 install: ``colcon build`` (installs launch/config/rviz files under
``share/video3d_ros``). Anywhere: ``pip install -e ros2_ws/src/video3d_ros``.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "video3d_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "tests"]),
    package_data={PACKAGE: ["py.typed", "model/*.md", "default_model/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("launch/config/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("launch/rviz/*.rviz")),
    ],
    python_requires=">=3.11",
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="video3d maintainers",
    maintainer_email="maintainers@video3d.dev",
    description="Position-aware Video-3D LLM for ROS 2: keyframes, grounding, QA, captions.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # ROS executables (`ros2 run video3d_ros <name>`, launch files)
            f"video3d_node = {PACKAGE}.ros.node:main",
            f"synthetic_camera = {PACKAGE}.ros.synthetic_camera:main",
            f"recording_player = {PACKAGE}.ros.recording_player:main",
            # command-line tools
            f"video3d = {PACKAGE}.cli:main",
            f"video3d-demo = {PACKAGE}.ros.demo:main",
            f"video3d-query = {PACKAGE}.ros.query_client:main",
            f"video3d-keyframes = {PACKAGE}.keyframes.cli:main",
        ],
    },
)
