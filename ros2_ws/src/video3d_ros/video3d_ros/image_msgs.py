"""sensor_msgs/Image → numpy, for any object with the message's fields (no ROS import).

Used by the node (rclpy messages) and by the rosbag reader (rosbags
messages): what ``cv_bridge`` does for these encodings, with ``step`` (row
padding) and ``is_bigendian`` honoured and every mismatch reported.
"""

from __future__ import annotations

import numpy as np

# encoding -> (dtype, channels, channel order to RGB)
COLOR_ENCODINGS: dict[str, tuple[np.dtype, int, tuple[int, ...]]] = {
    "rgb8": (np.dtype(np.uint8), 3, (0, 1, 2)),
    "bgr8": (np.dtype(np.uint8), 3, (2, 1, 0)),
    "rgba8": (np.dtype(np.uint8), 4, (0, 1, 2)),
    "bgra8": (np.dtype(np.uint8), 4, (2, 1, 0)),
    "mono8": (np.dtype(np.uint8), 1, (0, 0, 0)),
}
# REP 118: 16UC1 in millimetres (0 = invalid), 32FC1 in metres
DEPTH_ENCODINGS: dict[str, np.dtype] = {
    "16UC1": np.dtype(np.uint16),
    "mono16": np.dtype(np.uint16),
    "32FC1": np.dtype(np.float32),
}


def _bytes(data) -> np.ndarray:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)  # array.array (rclpy), ndarray (rosbags)


def image_pixels(msg, dtype: np.dtype, channels: int, source: str = "image",
                 error: type[Exception] = ValueError) -> np.ndarray:
    """(H, W, C) array of an Image's data, checked against height, width and step."""
    if msg.height == 0 or msg.width == 0:
        raise error(f"{source} is empty ({msg.width}x{msg.height})")
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise error(f"{source}: step {msg.step} < width·channels·bytes = {row_bytes} ({msg.encoding})")
    data = _bytes(msg.data)
    if data.size != msg.step * msg.height:
        raise error(f"{source}: data has {data.size} bytes, expected step·height = "
                    f"{msg.step}·{msg.height} = {msg.step * msg.height} ({msg.encoding})")
    rows = np.ascontiguousarray(data.reshape(msg.height, msg.step)[:, :row_bytes])
    arr = rows.view(dtype.newbyteorder(">" if msg.is_bigendian else "<"))
    return arr.reshape(msg.height, msg.width, channels).astype(dtype, copy=False)


def image_to_rgb(msg, source: str = "colour image", error: type[Exception] = ValueError) -> np.ndarray:
    """(H, W, 3) uint8 RGB from rgb8 / bgr8 / rgba8 / bgra8 / mono8."""
    spec = COLOR_ENCODINGS.get(msg.encoding)
    if spec is None:
        raise error(f"{source}: unsupported colour encoding {msg.encoding!r}; expected one of "
                    f"{', '.join(COLOR_ENCODINGS)}")
    dtype, channels, order = spec
    return np.ascontiguousarray(image_pixels(msg, dtype, channels, source, error)[:, :, list(order)])


def image_to_depth(msg, source: str = "depth image", error: type[Exception] = ValueError) -> np.ndarray:
    """(H, W) depth: uint16 for 16UC1/mono16 (scaled units, 0 invalid), float32 metres for 32FC1."""
    dtype = DEPTH_ENCODINGS.get(msg.encoding)
    if dtype is None:
        raise error(f"{source}: unsupported depth encoding {msg.encoding!r}; expected one of "
                    f"{', '.join(DEPTH_ENCODINGS)} (REP 118)")
    return image_pixels(msg, dtype, 1, source, error)[:, :, 0].copy()
