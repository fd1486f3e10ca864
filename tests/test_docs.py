"""The documentation: it builds with warnings as errors, its generated pages are current, and every command it
shows (README and docs) still composes."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from unet_pipeline.config.registry import register_segment_configs
from unet_pipeline.preflight import _variants
from unet_pipeline.training import register_train_configs

from .conftest import REPO

DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
BASH = re.compile(r"```bash\n(.*?)```", re.S)
HYDRA_ENTRIES = {"unet_pipeline": "pipeline", "unet_pipeline.train": "train", "unet_pipeline.validate": "validate",
                 "unet_pipeline.segment": "segment"}  # fmt: skip
ARGPARSE_ENTRIES = {"unet_pipeline.results", "unet_pipeline.bundle", "unet_pipeline.soup"}
DATA_PATHS = ("/data/carvana", "$CARVANA_DATASETS_PATH")


def documented_commands(page: Path) -> list[tuple[list[str], bool]]:
    """Each `python -m unet_pipeline...` command of the page's bash blocks (continuation lines joined, comments
    dropped), and whether the page shows it failing (a `# fails ...` comment)."""
    commands = []
    for block in BASH.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            for start in (i for i, w in enumerate(words[:-2]) if w == "python" and words[i + 1] == "-m"):
                end = words.index("&&", start) if "&&" in words[start:] else len(words)
                if words[start + 2].startswith("unet_pipeline"):
                    commands.append((words[start + 2 : end], "# fails" in line))
    return commands


CASES = [(page, command, fails) for page in PAGES for command, fails in documented_commands(page)]


def test_the_docs_show_commands_at_all():
    assert len(CASES) >= 40 and {c[0] for _, c, _ in CASES} >= {*HYDRA_ENTRIES, *ARGPARSE_ENTRIES}
    assert any(fails for *_, fails in CASES)  # the README shows a typo failing at composition


@pytest.mark.parametrize(
    ("page", "command", "fails"), CASES, ids=[f"{p.relative_to(REPO)}:{' '.join(c)[:60]}" for p, c, _ in CASES]
)
def test_every_documented_command_composes(page, command, fails, tmp_path):
    """Hydra commands compose with every value of every sweep, the data path replaced by a real folder; the
    argparse commands are modules that exist. A command that no longer composes fails here, and one the page
    shows failing (`# fails`) must still fail."""
    module, args = command[0], command[1:]
    if module in ARGPARSE_ENTRIES:
        assert importlib.util.find_spec(module) is not None
        return
    assert module in HYDRA_ENTRIES, f"{page.name}: unknown entry point python -m {module}"
    if "--help" in args or "--cfg" in args:
        return
    (tmp_path / "imgs").mkdir(), (tmp_path / "masks").mkdir()
    overrides = [a for a in args if not a.startswith("-")]
    for path in DATA_PATHS:
        overrides = [o.replace(path, str(tmp_path)) for o in overrides]
    problem = _composition_problem(HYDRA_ENTRIES[module], overrides)
    if fails:
        assert problem, f"{page.relative_to(REPO)}: python -m {' '.join(command)} is shown failing but composes"
    elif problem:
        pytest.fail(f"{page.relative_to(REPO)}: python -m {' '.join(command)}: {problem}")


def _composition_problem(config: str, overrides: list[str]) -> str | None:
    """The first line of the error composing any variant of the overrides raises, or None."""
    (register_segment_configs if config == "segment" else register_train_configs)()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(version_base="1.3", config_module="unet_pipeline.conf"):
            for variant in _variants(overrides):
                compose(config, overrides=variant, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        return str(exc).strip().splitlines()[0]
    finally:
        GlobalHydra.instance().clear()
        register_train_configs()  # the pipeline's schema back in its place
    return None


def test_generated_pages_are_current():
    """docs/reference/config.md, cli.md and the benchmark pages are what `python docs/generate.py` writes."""
    proc = subprocess.run([sys.executable, str(DOCS / "generate.py"), "--check"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(shutil.which("mkdocs") is None, reason='MkDocs not installed: pip install -e ".[dev]"')
def test_the_docs_build_with_warnings_as_errors(tmp_path):
    """Broken internal links, missing anchors and pages outside the navigation fail the build."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(["mkdocs", "build", "--strict", "-d", str(tmp_path / "site")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_user_facing_text_names_no_workspace_path():
    """`../shared` is where this project's own copy of the data lives: users have /data/carvana or
    $CARVANA_DATASETS_PATH."""
    texts = [*PAGES, *sorted((REPO / "conf").rglob("*.yaml"))]
    leaks = [str(p.relative_to(REPO)) for p in texts if "../shared" in p.read_text() or "shared/data" in p.read_text()]
    assert not leaks
