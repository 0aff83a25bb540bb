"""Files on disk: an atomic writer that respects what the path is, and a bounded reader.

Writing: the data goes to a temporary file beside the target, then replaces it
in one rename, so a crash leaves the previous file intact.  A symlink is
followed (its target is replaced, the link stays); anything that is not a
regular file (a device, a FIFO, a folder) is refused; an existing file keeps
its mode, a new one follows the umask.  Temporaries are named after their
target and writer process, so a later save removes those a killed process left.

Reading: only a regular file, and only up to a size limit (with an override),
so ``/dev/zero``, a FIFO or a huge file never hang or exhaust memory.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from typing import IO, Any

__all__ = ["MAX_BYTES", "atomic_write", "read_bounded"]

MAX_BYTES = 1 << 30  # 1 GiB: far beyond the book's models; pass max_bytes= for more


def _regular_or_missing(path: str, what: str) -> os.stat_result | None:
    """The stat of ``path`` if it is a regular file, None if it does not exist; OSError otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{what}: not a regular file")
    return st


def _temp_prefix(target: str) -> str:
    return f".{os.path.basename(target)}.portable_nn-"


def _remove_stale_temporaries(target: str) -> None:
    """Remove temporaries of ``target`` whose writer process no longer exists (a ``kill -9`` mid-save)."""
    folder, prefix = os.path.dirname(target), _temp_prefix(target)
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix):].split("-", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:  # the writer is gone: its temporary is garbage
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
            except PermissionError:  # another user's live process
                continue


def _new_file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Any, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` atomically; errors name ``path``, never the temporary."""
    given = os.fspath(path)
    target = os.path.realpath(given)  # a symlink: replace what it points to, keep the link
    existing = _regular_or_missing(target, f"cannot write {given}")
    folder = os.path.dirname(target)
    _remove_stale_temporaries(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {given}: {exc.strerror}") from None
    try:
        os.chmod(tmp, stat.S_IMODE(existing.st_mode) if existing is not None else _new_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"cannot write {given}: {exc.strerror or exc}") from None
        raise


def read_bounded(path: Any, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; OSError or ValueError naming ``path`` otherwise."""
    given = os.fspath(path)
    st = _regular_or_missing(given, f"cannot read {given}")
    if st is None:
        raise FileNotFoundError(f"cannot read {given}: no such file")
    if st.st_size > max_bytes:
        raise ValueError(f"{given}: {st.st_size} bytes, more than the limit of {max_bytes} "
                         "(pass max_bytes= to allow it)")
    with open(given, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we read
        raise ValueError(f"{given}: more than the limit of {max_bytes} bytes (pass max_bytes= to allow it)")
    return data
