"""Write files so that a crash never leaves a half-written output behind."""

import contextlib
import os
import tempfile
from pathlib import Path


def _umask():
    """The process umask: from /proc on Linux, which reads it without changing it
    (os.umask can only read by setting, a race with other threads' writes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only on success.

    The temporary name keeps the suffix, so libraries that choose a format by
    extension (numpy, Pillow, matplotlib) still do the right thing. mkstemp
    makes the file private (0600); before the rename it gets the mode an
    ordinary write would have given it (0666 less the umask), so colleagues on
    a shared file system can read the results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
