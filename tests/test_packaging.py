"""The configs ship inside the package: a non-editable install works from any directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO


def test_non_editable_install_composes_from_elsewhere(tmp_path):
    # from a copy without build outputs: setuptools would otherwise reuse a stale build/ and hide missing files
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "outputs", "*.egg-info", ".*cache"))
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
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    shipped = {p.relative_to(target / "unet_pipeline" / "conf") for p in (target / "unet_pipeline" / "conf").rglob("*")}
    assert {p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml")} <= shipped  # every config file
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


# `python -m unet_pipeline ARGS` in the current directory, without an editable install's import hook (which would
# map unet_pipeline.conf to conf/ and hide what a user of a plain `pip install .` meets)
_AS_A_PLAIN_INSTALL = (
    "import runpy, sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(f)]; "
    "sys.argv[0] = 'unet_pipeline'; runpy.run_module('unet_pipeline', run_name='__main__', alter_sys=True)"
)


def test_python_m_from_the_source_trees_root_finds_the_configs(tmp_path):
    """README command 1 in a clone's root: `python -m` puts the current directory first, so the source tree's
    `unet_pipeline/` is imported instead of the installed one, and it must carry its configs too (a link to conf/)."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO, clone, symlinks=True, ignore=shutil.ignore_patterns(".git", "build", "outputs", "*.egg-info"))
    proc = subprocess.run(
        [sys.executable, "-c", _AS_A_PLAIN_INSTALL, "precision=qint8_mixed_float16", "--cfg", "job"],
        capture_output=True,
        text=True,
        cwd=clone,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mode: qint8_mixed_float16" in proc.stdout
