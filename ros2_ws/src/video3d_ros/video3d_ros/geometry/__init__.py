"""Geometry: depth → world points, per-token coordinates, voxels, boxes (no ROS).

Conventions: metres and pixels in names; camera optical frame (x right, y
down, z forward); ``T_a_b`` maps points from frame b to frame a.
"""

from .boxes import (
    ANCHOR_RELATION_COLUMNS,
    Box3D,
    anchor_relations_m,
    box_iou_3d,
    box_iou_matrix,
    greedy_suppression,
    nearest_boxes,
    points_in_box_mask,
)
from .depth import PointMap, depth_to_metres, depth_to_world_m
from .tokens import (
    Aggregation,
    CropSpec,
    FrameFit,
    TokenGrid,
    crop_inside_mask,
    crop_source_indices,
    discretize_coords,
    patch_coords_m,
    patch_valid_fraction,
    resize_crop_nearest,
    resize_crop_params,
    token_grid,
)
from .voxels import pack_voxel_indices, unpack_voxel_keys, voxel_indices, voxel_keys

__all__ = [
    "Aggregation",
    "Box3D",
    "CropSpec",
    "FrameFit",
    "PointMap",
    "TokenGrid",
    "box_iou_3d",
    "box_iou_matrix",
    "greedy_suppression",
    "nearest_boxes",
    "anchor_relations_m",
    "ANCHOR_RELATION_COLUMNS",
    "crop_inside_mask",
    "crop_source_indices",
    "depth_to_metres",
    "depth_to_world_m",
    "discretize_coords",
    "pack_voxel_indices",
    "patch_coords_m",
    "patch_valid_fraction",
    "points_in_box_mask",
    "resize_crop_nearest",
    "resize_crop_params",
    "token_grid",
    "unpack_voxel_keys",
    "voxel_indices",
    "voxel_keys",
]
