"""Writing files so that a failed run never leaves a partial or corrupted one."""
import os
import os.path as osp
import tempfile
from contextlib import contextmanager


@contextmanager
def atomic_open(path, mode: str = 'w'):
    """Open a temporary file beside ``path``; when the block succeeds it replaces
    ``path`` in one step (``os.replace``), when it fails it is removed and ``path`` is
    left as it was.

    Example:
        >>> with atomic_open('out/scores.json') as f:
        ...     json.dump(results, f)
    """
    if 'w' not in mode:
        raise ValueError(f"atomic_open writes files: mode must contain 'w', got {mode!r}")
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        # mkstemp makes owner-only files; give the result the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
