"""Export a training checkpoint of a run as a model directory (safetensors + config + tokenizer).

The directory is what ``video3d-eval --checkpoint``, ``model.checkpoint`` of a recipe and the
node's ``model_path`` load. A run keeps its newest ``keep_checkpoints`` step checkpoints;
``--step`` picks one of them (default: the latest).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from video3d_ros.model.errors import CheckpointError

from .cli import report_user_error
from .train import export_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="video3d-export", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a training run's --output-dir")
    p.add_argument("out", type=Path, help="model directory to write")
    p.add_argument("--step", type=int, default=None,
                   help="the checkpoint of this optimiser step (default: the latest)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        export_checkpoint(args.run_dir, args.out, step=args.step)
    except (FileNotFoundError, ValueError, CheckpointError) as e:
        return report_user_error("video3d-export", e)
    print(f"video3d-export: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
