"""Writing files so that a failure never leaves a half-written one (no ROS)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def process_umask() -> int:
    """This process's umask, read without changing it where Linux says it (``os.umask``
    sets as it reads, which a second thread could see)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_default_mode(path: str | Path, directory: bool = False) -> None:
    """Set ``path`` to the mode a newly created file (0666) or folder (0777) gets under the
    umask — for what a library or ``tempfile`` created private (safetensors writes 0600)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~process_umask())


def create_temp_beside(path: str | Path) -> tuple[int, Path]:
    """Open a new, uniquely named temporary file in ``path``'s folder (created if missing)
    for writing; returns (descriptor, its path). Unlike ``tempfile.mkstemp`` (always 0600),
    the file gets the mode any new file gets (0666 less the umask), so that what is renamed
    onto ``path`` — model weights the node may read as another user — is not private."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync, rename."""
    path = Path(path)
    fd, tmp = create_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
