"""Writing output files all at once: a failed write never leaves a partial or broken file."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["replacing"]


@contextlib.contextmanager
def replacing(path):
    """Yields a temporary path beside ``path`` (same suffix); moves it onto ``path`` if the block
    succeeds, removes it if the block raises. An existing file at ``path`` is kept until then.

    Example:
        >>> with replacing("model.keras") as tmp:
        ...     model.save(tmp)
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the folder of {path!r} does not exist: create {folder!r} first")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tfprune-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
