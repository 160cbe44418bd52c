"""Creating the engine environment (the preferences' button): a real venv and pip, no bpy."""

from __future__ import annotations

import sys

from sapiens_blender.env_setup import EnvSetup, venv_python


def test_failed_install_is_reported_with_the_failing_step(tmp_path):
    setup = EnvSetup(tmp_path / "env", str(tmp_path / "no-such-engine-source"), python=sys.executable).start()
    assert setup.wait(300)
    assert setup.state == "error" and setup.env_python is None
    assert venv_python(tmp_path / "env").exists(), "the venv step ran"
    assert any(line.startswith("$ ") and "pip install" in line for line in setup.log)
    assert "failed (exit code" in setup.summary and "pip install" in setup.summary
