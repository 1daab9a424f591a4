"""Private directories under predictable names: refuse what another local user could plant.

``dlp up`` keeps Ray's temp dir and the HAProxy files under ``/tmp/dlp-*`` names (Ray's socket
paths must stay short), and a shared model replica keeps verified model copies under the
system's temp dir. Anyone on the machine can guess these names, so each is checked on the path
itself before the platform writes to it or runs anything from it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from dlplatform.errors import BackendUnavailable


def make_private_dir(path: Path, *, hint: str = "set another DLP_HOME") -> None:
    """Make ``path`` a directory that only this user may enter (0700), creating it if needed.

    The ``/tmp/dlp-*`` names (Ray's temp dir, the HAProxy files, whose wrapper script Serve
    runs) are predictable, so another local user could create one first: a directory of theirs,
    or a symlink to a place they control. So the path itself is checked, never what it points
    to (``O_NOFOLLOW``, then ``fstat`` and ``fchmod`` on what was opened): a symlink or a file,
    another user's directory, or one that anyone may write to (something may have been planted
    in it) is refused; a directory of ours is made 0700. /tmp's sticky bit keeps others from
    replacing it afterwards.

    Raises:
        BackendUnavailable: ``path`` is refused; the message says why, and ``hint`` what to do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:  # ELOOP: a symlink; ENOTDIR: not a directory
        kind = "a symlink" if path.is_symlink() else "not a directory"
        raise BackendUnavailable(
            f"{path} is {kind}; the platform uses only a real directory of its own there: "
            f"remove it, or {hint}"
        ) from exc
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise BackendUnavailable(f"{path} belongs to another user (uid {info.st_uid}): {hint}")
        if info.st_mode & stat.S_IWOTH:
            raise BackendUnavailable(
                f"{path} is writable by every user (mode {stat.S_IMODE(info.st_mode):o}), so "
                f"files in it cannot be trusted: remove it, or {hint}"
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
