"""Write a generated scene in ScanNet's on-disk layout.

Under ``<root>/scannet/``::

    posed_images/<scene_id>/color/NNNNN.jpg          colour, NNNNN = index in the 30 Hz stream
    posed_images/<scene_id>/depth/NNNNN.png          uint16 millimetres, 0 = invalid
    posed_images/<scene_id>/pose/NNNNN.txt           4×4 camera-to-world in the RAW scan frame
    posed_images/<scene_id>/instance/NNNNN.png       uint16 object_id + 1 (0 = nothing hit)
    posed_images/<scene_id>/intrinsic/intrinsic_color.txt, intrinsic_depth.txt   4×4
    scans/<scene_id>/<scene_id>.txt                  ScanNet meta: "axisAlignment = ..." etc. + frame list
    scans/<scene_id>/<scene_id>_objects.json         scene graph: objects, labels, colours, boxes
    pcd_with_object_aabbs/<split>/<scene_id>.npz     point cloud (aligned frame) with labels and boxes

As in ScanNet, aligned = axisAlignment · pose · point. Same scene and
configs → byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .layout import Scene
from .render import RenderConfig, SceneCamera
from .trajectory import TrajectoryConfig
from .vocab import Category


@dataclasses.dataclass(frozen=True)
class WriteConfig:
    """What to write for one scene."""

    frame_stride: int = 10            # keep one frame in ``frame_stride`` of the stream (ScanNet: 10)
    jpeg_quality: int = 90
    points_per_m2: float = 1500.0     # density of the labelled point cloud
    write_instance_masks: bool = True

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality} outside [1, 100]")
        if self.points_per_m2 <= 0:
            raise ValueError(f"points_per_m2 must be > 0, got {self.points_per_m2}")


@dataclasses.dataclass(frozen=True)
class SceneFiles:
    """Paths written for one scene."""

    posed_dir: Path
    meta_txt: Path
    objects_json: Path
    points_npz: Path
    frame_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ScenePoints:
    """Labelled surface samples of a scene in the aligned frame.

    xyz_m (N, 3) float32; rgb (N, 3) uint8; instance_ids (N,) int32 object_id;
    class_ids (N,) int32 ``Category.class_id``.
    """

    xyz_m: np.ndarray
    rgb: np.ndarray
    instance_ids: np.ndarray
    class_ids: np.ndarray


def matrix_txt(M: np.ndarray) -> str:
    """4×4 matrix as four lines of space-separated numbers (ScanNet's pose/intrinsic files)."""
    M = np.asarray(M, dtype=np.float64)
    if M.shape != (4, 4):
        raise ValueError(f"expected a (4, 4) matrix, got {M.shape}")
    return "".join(" ".join(f"{v:.8f}" for v in row) + "\n" for row in M)


def K_4x4(K: np.ndarray) -> np.ndarray:
    """(3, 3) intrinsics → ScanNet's (4, 4) layout."""
    out = np.eye(4)
    out[:3, :3] = K
    return out


def stored_frame_ids(n_frames: int, stride: int) -> list[int]:
    """Indices of the stream kept on disk: 0, stride, 2·stride, … < n_frames."""
    return list(range(0, n_frames, stride))


def scannet_meta_txt(scene: Scene, render_config: RenderConfig, n_frames: int, frame_ids: list[int]) -> str:
    """Text of ScanNet's ``<scene_id>.txt`` with our frame list appended.

    Keys follow ScanNet: ``axisAlignment`` (16 numbers, row-major
    T_aligned_raw), colour/depth sizes and intrinsics, frame counts.
    ``storedFrames`` lists the stream indices written under posed_images.
    """
    K = render_config.K
    lines = [
        "axisAlignment = " + " ".join(f"{v:.8f}" for v in np.asarray(scene.T_aligned_raw).reshape(-1)),
        f"colorHeight = {render_config.height}", f"colorWidth = {render_config.width}",
        f"depthHeight = {render_config.height}", f"depthWidth = {render_config.width}",
        f"fx_color = {K[0, 0]:.6f}", f"fx_depth = {K[0, 0]:.6f}",
        f"fy_color = {K[1, 1]:.6f}", f"fy_depth = {K[1, 1]:.6f}",
        f"mx_color = {K[0, 2]:.6f}", f"mx_depth = {K[0, 2]:.6f}",
        f"my_color = {K[1, 2]:.6f}", f"my_depth = {K[1, 2]:.6f}",
        f"numColorFrames = {n_frames}", f"numDepthFrames = {n_frames}", "numIMUmeasurements = 0",
        "sceneType = Generated",
        "storedFrames = " + " ".join(str(i) for i in frame_ids),
    ]
    return "\n".join(lines) + "\n"


def read_scannet_meta(path: Path) -> dict[str, str]:
    """Parse ``key = value`` lines of a ScanNet meta txt."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def read_axis_alignment(path: Path) -> np.ndarray:
    """(4, 4) T_aligned_raw from a ScanNet meta txt (identity if the key is absent, as for test scans)."""
    meta = read_scannet_meta(path)
    if "axisAlignment" not in meta:
        return np.eye(4)
    vals = [float(v) for v in meta["axisAlignment"].split()]
    if len(vals) != 16:
        raise ValueError(f"{path}: axisAlignment has {len(vals)} numbers, expected 16")
    return np.array(vals).reshape(4, 4)


def sample_scene_points(scene: Scene, points_per_m2: float = 1500.0, include_ceiling: bool = False) -> ScenePoints:
    """Area-uniform samples of every object and structure surface (deterministic in scene.seed).

    Like a ScanNet reconstruction, the ceiling is left out unless asked for.
    """
    rng = np.random.default_rng([scene.seed, 202])
    xyz, rgb, inst, cls = [], [], [], []
    for e in scene.all_elements:
        if e.category is Category.CEILING and not include_ceiling:
            continue
        if e.category.is_structure:
            mesh, tri_rgb = scene.structure_mesh(e)
        else:
            mesh, tri_rgb = e.mesh, e.triangle_rgb
        V = np.asarray(mesh.vertices)
        F = np.asarray(mesh.triangles)
        a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
        area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
        n = max(1, int(round(area.sum() * points_per_m2)))
        tri = rng.choice(len(F), size=n, p=area / area.sum())
        r1, r2 = rng.uniform(size=(2, n))
        s = np.sqrt(r1)
        w0, w1, w2 = 1 - s, s * (1 - r2), s * r2
        pts = w0[:, None] * a[tri] + w1[:, None] * b[tri] + w2[:, None] * c[tri]
        xyz.append(pts.astype(np.float32))
        rgb.append((tri_rgb[tri] * 255 + 0.5).astype(np.uint8))
        inst.append(np.full(n, e.object_id, np.int32))
        cls.append(np.full(n, e.category.class_id, np.int32))
    return ScenePoints(np.concatenate(xyz), np.concatenate(rgb), np.concatenate(inst), np.concatenate(cls))


def box_corners_m(box_min_m: np.ndarray, box_max_m: np.ndarray) -> np.ndarray:
    """(8, 3) corners of an axis-aligned box."""
    lo, hi = np.asarray(box_min_m), np.asarray(box_max_m)
    idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    return np.where(idx == 0, lo, hi)


def scene_graph_json(scene: Scene, frame_ids: list[int]) -> dict:
    """JSON-ready scene graph: room, alignment, objects (id, label, colour, size, box, support, wall)."""
    return {
        "scene_id": scene.scene_id,
        "seed": scene.seed,
        "room_size_m": list(scene.room_size_m),
        "axis_align_matrix": np.asarray(scene.T_aligned_raw).tolist(),
        "stored_frames": frame_ids,
        "objects": [
            {
                "object_id": o.object_id, "object_name": o.category.value, "colour": o.colour.value,
                "size_m": list(o.size_m), "yaw_index": o.yaw_index, "box": o.box6,
                "support_id": o.support_id, "wall_index": o.wall_index,
            }
            for o in scene.objects
        ],
    }


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _jpg_bytes(arr: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_scene(scene: Scene, root: Path, *, split: str = "train", render_config: RenderConfig | None = None,
                trajectory_config: TrajectoryConfig | None = None, write_config: WriteConfig | None = None,
                on_frame: Callable[[int], None] | None = None) -> SceneFiles:
    """Render the stored frames of a scene and write all its files under ``root/scannet``.

    Args:
        scene: the generated room.
        root: output folder (created).
        split: "train" / "val" (folder of the point cloud, as in the reference's layout).
        on_frame: called with the stream index after each written frame (progress bars).
    """
    rcfg = render_config or RenderConfig()
    wcfg = write_config or WriteConfig()
    cam = SceneCamera(scene, rcfg, trajectory_config)
    frame_ids = stored_frame_ids(len(cam), wcfg.frame_stride)
    base = Path(root) / "scannet"
    posed = base / "posed_images" / scene.scene_id
    subdirs = ["color", "depth", "pose", "intrinsic"] + (["instance"] if wcfg.write_instance_masks else [])
    for d in subdirs:
        (posed / d).mkdir(parents=True, exist_ok=True)
    K4 = K_4x4(cam.K)
    (posed / "intrinsic" / "intrinsic_color.txt").write_text(matrix_txt(K4))
    (posed / "intrinsic" / "intrinsic_depth.txt").write_text(matrix_txt(K4))
    T_raw_aligned = np.linalg.inv(scene.T_aligned_raw)
    for i in frame_ids:
        f = cam.render(i)
        name = f"{i:05d}"
        (posed / "color" / f"{name}.jpg").write_bytes(_jpg_bytes(f.rgb, wcfg.jpeg_quality))
        (posed / "depth" / f"{name}.png").write_bytes(_png_bytes(f.depth_mm))
        (posed / "pose" / f"{name}.txt").write_text(matrix_txt(T_raw_aligned @ f.T_world_cam))
        if wcfg.write_instance_masks:
            (posed / "instance" / f"{name}.png").write_bytes(_png_bytes((f.instance_ids + 1).astype(np.uint16)))
        if on_frame is not None:
            on_frame(i)
    scans = base / "scans" / scene.scene_id
    scans.mkdir(parents=True, exist_ok=True)
    meta = scans / f"{scene.scene_id}.txt"
    meta.write_text(scannet_meta_txt(scene, rcfg, len(cam), frame_ids))
    objects_json = scans / f"{scene.scene_id}_objects.json"
    objects_json.write_text(json.dumps(scene_graph_json(scene, frame_ids), indent=1))
    pts = sample_scene_points(scene, wcfg.points_per_m2)
    pcd_dir = base / "pcd_with_object_aabbs" / split
    pcd_dir.mkdir(parents=True, exist_ok=True)
    npz = pcd_dir / f"{scene.scene_id}.npz"
    buf = io.BytesIO()
    np.savez(buf, xyz=pts.xyz_m, rgb=pts.rgb, instance_ids=pts.instance_ids, class_ids=pts.class_ids,
             aabb_obj_ids=np.array([o.object_id for o in scene.objects], np.int32),
             aabb_corner_xyz=np.stack([box_corners_m(o.box_min_m, o.box_max_m) for o in scene.objects]))
    npz.write_bytes(buf.getvalue())
    return SceneFiles(posed, meta, objects_json, npz, tuple(frame_ids))
