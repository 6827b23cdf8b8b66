"""The README's Quick start, run as a new user would: its commands, one after the other,
in a copy of the repository with no virtual environment, no config and no token."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Quick start"):]
    block = section[section.index("```sh\n") + 6:]
    return [line for line in block[:block.index("```")].splitlines() if line.strip()]


@pytest.mark.slow
def test_the_readme_quick_start_works_in_a_fresh_copy(tmp_path):
    commands = quick_start_commands()
    assert len(commands) == 2
    copy = tmp_path / "asana-etl"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    for name in ("etl", "migrations"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "ASANA_ACCESS_TOKEN") and not key.startswith("ASANA_ETL")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(ROOT)))
    for command in commands:
        done = subprocess.run(["bash", "-c", command], cwd=copy, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert "demo succeeded" in done.stdout
    assert (copy / "asana_demo.db").exists()
