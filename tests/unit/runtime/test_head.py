"""`dlp up` again on a home whose last Ray head ran (stopped or killed): Ray left its temp dir
world-writable (mode 777), and the new head must still start in a private one."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from dlplatform.errors import BackendUnavailable
from dlplatform.runtime.head import private_temp_dir
from dlplatform.runtime.processes import offspring


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_shared_temp_dir_inside_the_home_is_made_private_and_keeps_its_logs(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    temp = home / "ray"
    (temp / "session_1" / "logs").mkdir(parents=True)
    temp.chmod(0o777)  # as Ray leaves it
    private_temp_dir(temp, home)
    assert _mode(temp) == 0o700
    assert (temp / "session_1" / "logs").is_dir()  # the last session's logs, for a post-mortem


def test_a_shared_temp_dir_outside_the_home_is_emptied_first(tmp_path: Path) -> None:
    temp = tmp_path / "dlp-1234abcd"
    (temp / "session_1").mkdir(parents=True)
    (temp / "planted").write_text("anyone could have written this")
    temp.chmod(0o777)
    private_temp_dir(temp, tmp_path / "home")
    assert _mode(temp) == 0o700
    assert list(temp.iterdir()) == []


def test_a_symlink_is_still_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "home" / "ray"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(BackendUnavailable, match="symlink"):
        private_temp_dir(link, tmp_path / "home")


def test_offspring_are_the_processes_a_session_started_in_sessions_of_their_own() -> None:
    """Like a Ray job supervisor starting a job's driver: a child in a new session."""
    import subprocess
    import sys

    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         "subprocess.Popen(['sleep', '30'], start_new_session=True); time.sleep(30)"],
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not (found := offspring(leader.pid)):
            assert time.monotonic() < deadline, "the child never showed up"
            time.sleep(0.05)
        ((child, session),) = found.items()
        assert session == child != leader.pid  # its own session, led by itself
    finally:
        for pid in (*offspring(leader.pid), leader.pid):
            os.kill(pid, signal.SIGKILL)
        leader.wait()
