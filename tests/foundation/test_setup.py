"""The README's set-up is idempotent: a second run does no work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (ROOT / ".build" / "env.sh").exists(), reason="set-up has not run here")
def test_second_setup_run_skips_everything() -> None:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], capture_output=True,
                            text=True, timeout=120, check=True)
    lines = [line for line in result.stderr.splitlines() if line.startswith("[setup]")]
    assert lines == [line for line in lines if "ready" in line] and len(lines) == 1, result.stderr


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in ci
    assert "bash scripts/test.sh" in readme.split("\n## ", 1)[0], "README must open with the test command"


def test_every_test_module_is_collected_under_strict_markers() -> None:
    """pyproject registers the markers used in the suite (strict markers reject typos)."""
    text = (ROOT / "pyproject.toml").read_text()
    for marker in ("slow", "gpu", "ros"):
        assert f'"{marker}:' in text
