"""video3d_train: datasets, converters, recipes, training and evaluation.

Imports the model and geometry from ``video3d_ros`` (which import no ROS).
"""
