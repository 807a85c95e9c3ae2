"""Generated rooms written as ScanNet-layout scans, and the model a query benchmark runs
(helpers of ``bench_ask.py`` and ``bench_prepare.py``, as ``bench_keyframes_scene.py`` is of the
keyframe benchmarks)."""

from __future__ import annotations

import argparse
from pathlib import Path

from video3d_ros.model.untrained import write_untrained_tiny
from video3d_ros.scene_qa import EMBEDDED_MODEL_DIR
from video3d_ros.scenes import RenderConfig, TrajectoryConfig, generate_scene
from video3d_ros.scenes.writer import WriteConfig, write_scene


def add_scan_arguments(ap: argparse.ArgumentParser, scan_frames: int) -> None:
    """--model, --scan-frames (default ``scan_frames``), --width, --height."""
    ap.add_argument("--model", type=Path, default=None, help="checkpoint dir (default: embedded)")
    ap.add_argument("--scan-frames", type=int, default=scan_frames, help="frames of each scan")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)


def benchmark_model(model: Path | None, tmp: Path) -> tuple[Path, str]:
    """``model``, else the embedded model, else an untrained ``tiny`` of its shape written under
    ``tmp``; and a line saying which."""
    if model is not None:
        return model, f"model: {model}"
    if (EMBEDDED_MODEL_DIR / "config.json").is_file():
        return EMBEDDED_MODEL_DIR, f"model: {EMBEDDED_MODEL_DIR}"
    return (write_untrained_tiny(tmp / "tiny"),
            "model: embedded model not present; using an untrained `tiny` checkpoint (same shape)")


def write_generated_scan(out: Path, seed: int, scene_id: str, args: argparse.Namespace) -> Path:
    """Generated room ``seed`` scanned along its path, every one of ``args.scan_frames`` frames of
    ``args.width`` × ``args.height`` written (no instance masks); returns the posed-images folder."""
    scene = generate_scene(seed=seed, scene_id=scene_id)
    files = write_scene(scene, out, render_config=RenderConfig(width=args.width, height=args.height),
                        trajectory_config=TrajectoryConfig(n_frames=args.scan_frames),
                        write_config=WriteConfig(frame_stride=1, write_instance_masks=False))
    return files.posed_dir
