"""The configs ship inside the package: a non-editable install works from any directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_non_editable_install_composes_from_elsewhere(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    assert (target / "unet_pipeline" / "conf" / "precision" / "qint8_mixed_float16.yaml").is_file()
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    probe = subprocess.run(
        [sys.executable, "-c", "import unet_pipeline.conf as c; print(c.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert Path(probe.stdout.strip()).is_relative_to(target)
    proc = subprocess.run(
        [sys.executable, "-m", "unet_pipeline", "precision=qint8_mixed_float16", "--cfg", "job"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mode: qint8_mixed_float16" in proc.stdout
