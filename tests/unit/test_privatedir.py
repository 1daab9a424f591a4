"""The private directories the platform makes (the home, Ray's temp dir, the HAProxy files under a
predictable ``/tmp/dlp-*`` name, whose wrapper script Serve runs): a symlink, a file, another
user's directory or a world-writable one is refused, never followed or adopted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dlplatform._privatedir import make_private_dir
from dlplatform.errors import BackendUnavailable


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_directory_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "a" / "dlp-hap-x"
    make_private_dir(path)
    assert path.is_dir() and not path.is_symlink() and _mode(path) == 0o700
    make_private_dir(path)  # again: harmless


def test_an_own_directory_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "home"
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    make_private_dir(path)
    assert _mode(path) == 0o700


def test_a_planted_symlink_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    elsewhere = tmp_path / "attacker-controlled"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o755)
    link = tmp_path / "dlp-hap-0-abc"
    link.symlink_to(elsewhere)
    with pytest.raises(BackendUnavailable, match="is a symlink"):
        make_private_dir(link)
    assert _mode(elsewhere) == 0o755  # not adopted: nothing chmod-ed or written through it
    assert list(elsewhere.iterdir()) == []

    dangling = tmp_path / "dlp-dangling"
    dangling.symlink_to(tmp_path / "not-yet")
    with pytest.raises(BackendUnavailable, match="is a symlink"):
        make_private_dir(dangling)
    assert not (tmp_path / "not-yet").exists()  # mkdir did not follow it either


def test_a_file_or_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "dlp-file"
    file.write_text("")
    with pytest.raises(BackendUnavailable, match="not a directory"):
        make_private_dir(file)
    shared = tmp_path / "dlp-shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(BackendUnavailable, match="writable by every user"):
        make_private_dir(shared)
    assert _mode(shared) == 0o1777


@pytest.mark.skipif(os.getuid() != 0, reason="making a directory of another user needs root")
def test_another_users_directory_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "dlp-theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 4242, 4242)
    with pytest.raises(BackendUnavailable, match="belongs to another user"):
        make_private_dir(theirs)


def test_the_shared_replicas_model_cache_is_a_private_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Verified model copies go to ``<tmp>/dlp-model-cache-<uid>``: a planted symlink there would
    have sent every model's weights to a directory of the planter's."""
    from types import SimpleNamespace

    from dlplatform.serve.multiplex import _LocalCache

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    (tmp_path / f"dlp-model-cache-{os.getuid()}").symlink_to(elsewhere)
    backend = SimpleNamespace(store=None, artifacts=None, settings=None)
    with pytest.raises(BackendUnavailable, match="is a symlink"):
        _LocalCache(backend)
    (tmp_path / f"dlp-model-cache-{os.getuid()}").unlink()
    assert _LocalCache(backend).local is not None
    assert _mode(tmp_path / f"dlp-model-cache-{os.getuid()}") == 0o700
