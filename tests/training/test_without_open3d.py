"""Training and evaluation import without open3d (a GPU machine may lack it; only scene
generation and proposals need it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_training_and_evaluation_import_without_open3d():
    code = textwrap.dedent("""
        import importlib.abc, sys

        class NoOpen3d(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] == "open3d":
                    raise ImportError("open3d is not installed here")
                return None

        sys.meta_path.insert(0, NoOpen3d())
        import video3d_train.train, video3d_train.evaluate, video3d_train.step
        from video3d_ros.scenes import Colour
        assert "open3d" not in sys.modules
        try:
            from video3d_ros.scenes import SceneCamera  # rendering does need it
        except ImportError as e:
            print("refused:", e)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "refused: open3d is not installed here" in res.stdout
