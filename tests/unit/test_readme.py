"""The README stays true: the two commands open it, and its runnable blocks run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def test_the_two_commands_open_the_readme() -> None:
    blocks = BLOCK.findall(README.read_text())
    assert blocks[0].strip() == "pip install -e . && dlp demo"
    assert blocks[1].strip() == 'pip install -e ".[dev]" && pytest'


def test_runnable_blocks_run_as_written(tmp_path: Path) -> None:
    text = README.read_text()
    runnable = [BLOCK.match(text, m.end() + 1) for m in re.finditer("<!-- runnable -->", text)]
    assert runnable and all(runnable)
    env = {**os.environ, "DLP_HOME": str(tmp_path / "home")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    for match in runnable:
        assert match is not None
        for line in match.group(1).strip().splitlines():
            done = subprocess.run(
                ["bash", "-c", line], env=env, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}"
