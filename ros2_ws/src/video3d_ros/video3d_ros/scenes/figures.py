"""Pictures of a generated scene: top-down plan (boxes, labels, camera path) and a contact sheet."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from .layout import Scene  # noqa: E402


def plot_top_down(scene: Scene, T_world_cam: np.ndarray, path: Path, stored_frame_ids: list[int] | None = None) -> None:
    """Plan view in the aligned frame: room outline, object boxes (colour, label, id), camera path.

    Args:
        T_world_cam: (N, 4, 4) camera poses of the stream (aligned frame).
        stored_frame_ids: frames written to disk, marked on the path.
    """
    Lx, Ly, _ = scene.room_size_m
    fig, ax = plt.subplots(figsize=(7, 7 * Ly / Lx + 0.5))
    ax.add_patch(Rectangle((-Lx / 2, -Ly / 2), Lx, Ly, fill=False, lw=2, ec="k"))
    for o in sorted(scene.objects, key=lambda o: o.box_max_m[2]):
        lo, hi = o.box_min_m, o.box_max_m
        ax.add_patch(Rectangle(tuple(lo[:2]), *(hi[:2] - lo[:2]), fc=o.colour.rgb, ec="k", alpha=0.75, lw=0.8))
        ax.text(*o.center_m[:2], f"{o.object_id}:{o.category.value}", ha="center", va="center", fontsize=6,
                bbox=dict(fc="white", alpha=0.6, lw=0, pad=0.5))
    eye = T_world_cam[:, :3, 3]
    ax.plot(eye[:, 0], eye[:, 1], "-", c="tab:red", lw=1, label="camera path")
    ids = stored_frame_ids if stored_frame_ids is not None else list(range(0, len(eye), max(1, len(eye) // 30)))
    fwd = T_world_cam[ids, :3, 2]
    ax.quiver(eye[ids, 0], eye[ids, 1], fwd[:, 0], fwd[:, 1], color="tab:red", scale=25, width=0.003)
    ax.set_aspect("equal")
    ax.set_xlim(-Lx / 2 - 0.2, Lx / 2 + 0.2)
    ax.set_ylim(-Ly / 2 - 0.2, Ly / 2 + 0.2)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"{scene.scene_id}: {len(scene.objects)} objects, room {Lx:.1f}×{Ly:.1f} m")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def contact_sheet(image_paths: list[Path], path: Path, columns: int = 4, max_images: int = 12) -> None:
    """Grid of evenly spaced frames, titled by file name."""
    if not image_paths:
        raise ValueError("contact_sheet: no images")
    pick = np.linspace(0, len(image_paths) - 1, min(max_images, len(image_paths))).round().astype(int)
    rows = int(np.ceil(len(pick) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), pick):
        ax.imshow(np.asarray(Image.open(image_paths[i])))
        ax.set_title(Path(image_paths[i]).name, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
