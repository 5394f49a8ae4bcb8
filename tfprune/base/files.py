"""Writing output files all at once: a failed write never leaves a partial or broken file.

Every file is first written to a hidden temporary file beside it, named
``.tfprune-<pid>-<random>-<name>``, and moved onto its path only once complete. The result has
the mode a plain ``open()`` would give it under the current umask, or, when it replaces a file,
that file's mode. A process killed during a write (SIGKILL, power loss) cannot remove its
temporary file; the next write into the same folder removes every such file whose process is no
longer running here and that is older than the writing process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time

from tfprune.base import arguments

__all__ = ["check_output_folder", "check_output_path", "replacing", "replacing_text"]

TEMPORARY_PREFIX = ".tfprune-"
_STARTED = time.time()  # when this process imported tfprune: older temporary files are not its own


def check_output_path(path, argument="path"):
    """Checks that a file can be written at ``path``, before any work is done for it.

    Args:
        path: The file to write.
        argument: How to name ``path`` in the error, e.g. ``"--out"``.

    Returns:
        ``path`` as a string.

    Raises:
        ArgumentError: if ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: if its folder does not exist.
        IsADirectoryError: if ``path`` is a folder.
        PermissionError: if its folder is not writable.

    Example:
        >>> check_output_path("runs/model.keras", "--out")
        'runs/model.keras'
    """
    path = arguments.path(argument, path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the folder of {argument} {path!r} does not exist: create {folder!r} first")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{argument} {path!r} is a folder: give a file name inside it")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {argument} {path!r}: the folder {folder!r} is not writable")
    return path


def check_output_folder(path, argument="path"):
    """Checks that a folder can be written at ``path`` (created there if missing), before any work.

    Args:
        path: The folder.
        argument: How to name ``path`` in the error, e.g. ``"log_dir"``.

    Returns:
        ``path`` as a string.

    Raises:
        ArgumentError: if ``path`` is not a str or ``os.PathLike``.
        NotADirectoryError: if ``path``, or a folder it lies under, is a file.
        PermissionError: if ``path``, or the nearest existing folder above it, is not writable.

    Example:
        >>> check_output_folder("logs/run1", "log_dir")
        'logs/run1'
    """
    path = arguments.path(argument, path)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == os.path.abspath(path) else f"lies under the file {existing!r}"
        raise NotADirectoryError(f"{argument} {path!r} {where}: give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {argument} {path!r}: the folder {existing!r} is not writable")
    return path


@contextlib.contextmanager
def replacing(path):
    """Yields a temporary path beside ``path`` (ending in its name); moves it onto ``path`` if the
    block succeeds, removes it if the block raises. An existing file at ``path`` is kept until then.

    The file gets the mode of the file it replaces, or else that of a new file under the umask.

    Args:
        path: The file to write.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: as :func:`check_output_path`,
            before the block runs.
        OSError: an I/O error of the block (a full disk, ...) that named no file, or the temporary
            one, is raised again naming ``path``.

    Example:
        >>> with replacing("model.keras") as tmp:
        ...     model.save(tmp)
    """
    path = check_output_path(path)
    folder, name = os.path.split(os.path.abspath(path))
    _remove_stale_temporaries(folder)
    tmp = os.path.join(folder, f"{TEMPORARY_PREFIX}{os.getpid()}-{secrets.token_hex(8)}-{name}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as for open()
    mode = stat.S_IMODE(os.stat(path if os.path.isfile(path) else tmp).st_mode)
    try:
        yield tmp
        os.chmod(tmp, mode)  # the writer may have made a new file at tmp
        os.replace(tmp, path)
    except OSError as error:
        if error.filename not in (None, tmp):
            raise
        if error.errno is None:
            raise OSError(f"cannot write {path!r}: {error}") from error
        raise OSError(error.errno, error.strerror, path) from error  # the errno's subclass, e.g. FileNotFoundError
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def replacing_text(path, newline=None):
    """Yields a text file open for writing that replaces ``path`` once closed without error.

    Example:
        >>> with replacing_text("table.md") as f:
        ...     f.write(table)
    """
    with replacing(path) as tmp, open(tmp, "w", newline=newline) as f:
        yield f


def _remove_stale_temporaries(folder):
    """Removes the temporary files in ``folder`` left by writers that were killed."""
    for entry in os.scandir(folder):
        if not (entry.name.startswith(TEMPORARY_PREFIX) and entry.is_file(follow_symlinks=False)):
            continue
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if entry.stat(follow_symlinks=False).st_mtime < _STARTED and not _running(_writer(entry.name)):
                os.remove(entry.path)


def _writer(name):
    """The process id in a temporary file's name, or ``None`` (older tfprune versions wrote none)."""
    pid = name[len(TEMPORARY_PREFIX):].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _running(pid):
    """Whether process ``pid`` runs on this machine (``False`` for ``None``)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True
