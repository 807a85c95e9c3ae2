"""What the training package's commands do with a user's mistake.

A missing or unreadable file, a corrupt annotation, results or checkpoint file, a room that
breaks a reader: the command prints one line saying what was wrong (the exceptions below
already name the file, and the sample where there is one) and exits with status 2, as
argparse does for a bad option, instead of a traceback. Any other exception is a bug of
ours and keeps its traceback. ``VIDEO3D_TRACEBACK=1`` prints the traceback of these too.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

from video3d_ros.keyframes.scan_io import ScanFormatError
from video3d_ros.model.errors import CheckpointError

from .data import DataError
from .scannet import ScanNetFormatError

# OSError: a path that does not exist, is not a folder, cannot be read or written
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, CheckpointError, ScanNetFormatError,
                                                ScanFormatError, OSError)
EXIT_USER_ERROR = 2


def report_user_error(prog: str, exc: BaseException) -> int:
    """Print ``prog: error: <exc>`` (with the traceback under ``VIDEO3D_TRACEBACK=1``) and
    return the exit status of a user error. Call it from an ``except`` block."""
    if os.environ.get("VIDEO3D_TRACEBACK") == "1":
        traceback.print_exc()
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return EXIT_USER_ERROR


def run_command(prog: str, command: Callable[[], int]) -> int:
    """``command()``'s exit status, or 2 after one line on stderr for a user error."""
    try:
        return command()
    except USER_ERRORS as e:
        return report_user_error(prog, e)
