"""Writing files so that a failed run never leaves a partial or corrupted one."""
import json
import os
import os.path as osp
import tempfile
from contextlib import contextmanager


def fsync_dir(folder: str) -> None:
    """Make a rename inside ``folder`` durable (a crash after ``os.replace`` can
    otherwise still show the old directory entry)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path, mode: str = 'w'):
    """Open a temporary file beside ``path``; when the block succeeds it is flushed to
    disk (fsync) and replaces ``path`` in one step (``os.replace``), when it fails it is
    removed and ``path`` is left as it was. A crash (even SIGKILL or power loss) leaves
    either the old or the new file, never a partial one.

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
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes owner-only files; give the result the usual permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        fsync_dir(folder)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(obj, path, indent=None) -> None:
    """Write ``obj`` as JSON to ``path`` so that a failed run leaves no partial file."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent)
        if indent is not None:
            f.write('\n')


def write_text_atomic(text: str, path) -> None:
    """Replace ``path`` with ``text`` in one step."""
    with atomic_open(path) as f:
        f.write(text)
