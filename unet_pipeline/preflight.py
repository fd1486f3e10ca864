"""Check the command line before Hydra runs it, so a bad override is one line naming the fix.

Why: Hydra reports a composition error over several lines (the choices one per line, then a hint about
HYDRA_FULL_ERROR), and a job whose output dir cannot be written fails inside Hydra with a traceback. Here
every value of every override (sweep lists included) is composed once with the real config, and the first
error is condensed to one line; anything this check cannot judge is left to Hydra.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_MODULE = "unet_pipeline.conf"
# Flags after which the command line is not plain overrides: Hydra's own handling is kept as it is.
_SKIP_IF = ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--config-path", "-cp",
            "--config-name", "-cn", "--config-dir", "-cd", "--package", "-p", "--resolve", "--shell-completion",
            "-sc", "--experimental-rerun", "--version")  # fmt: skip


# The training overlays' old spelling, `+experiment=train_<name>`, before they had their own group.
_OLD_OVERLAY = re.compile(r"^[+~]?experiment=(?P<names>train_[\w,]*)$")
_TRAINING_ENTRY = {"validate": "python -m unet_pipeline.validate"}  # else: python -m unet_pipeline.train


def _old_overlay(args: list[str], config_name: str) -> str | None:
    """`+experiment=train_X` names a training overlay, which now lives in its own group: say the new spelling."""
    for arg in args:
        match = _OLD_OVERLAY.match(arg)
        if match:
            names = ",".join(n.removeprefix("train_") for n in match["names"].split(","))
            entry = _TRAINING_ENTRY.get(config_name, "python -m unet_pipeline.train")
            return f"{arg} is a training overlay, now in its own group: {entry} train/experiment={names}"
    return None


def _variants(args: list[str]) -> list[list[str]]:
    """The overrides with each sweep at its first value, then once per other value of each sweep."""
    parsed = OverridesParser.create().parse_overrides(args)
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
        for o in parsed
    ]
    base = [c[0] for c in choices]
    variants = [base]
    for i, values in enumerate(choices):
        variants += [[*base[:i], v, *base[i + 1 :]] for v in values[1:]]
    return variants


def _one_line(exc: Exception) -> str:
    if isinstance(exc, MissingConfigException) and exc.options:
        what = str(exc).splitlines()[0].split(": ", 1)[-1]
        return f"{what}; choose one of: {', '.join(exc.options)}"
    lines = [str(exc).strip().splitlines()[0].rstrip(".")]
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0])
    return ": ".join(lines) + "; `--cfg job` prints every key with its current value"


def _unwritable(path: str) -> str | None:
    """Why `path` cannot be created and written (probed in its nearest existing ancestor), else None."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            return None
    except OSError as exc:
        return f"{probe}: {exc.strerror or type(exc).__name__}"


def _input_problem(cfg, config_name: str) -> str | None:
    """A numeric setting out of range, or a data.root that is missing, empty or not Carvana: what every job of
    this command line would fail on, said once before any dir is made (the job checks again, for other launchers)."""
    from unet_pipeline.config import check_ranges
    from unet_pipeline.core import PipelineError
    from unet_pipeline.data import plan_data, require_root

    if config_name == "segment":  # its data are input= (checked when listed); data.root only calibrates int8
        return None
    try:
        if config_name == "pipeline":
            check_ranges(cfg)
            if str(cfg.logger.name.value) == "mlflow":
                from unet_pipeline.report.tracking import INSTALL_HINT, installed

                if not installed():
                    return INSTALL_HINT
        if plan_data(cfg.data) == "real":
            require_root(cfg.data.root)
        calibrated = config_name == "pipeline" and str(cfg.precision.mode.value).startswith("qint")
        if calibrated and cfg.calibration.num_samples and cfg.calibration.root != cfg.data.root:
            require_root(cfg.calibration.root, "calibration.root")
    except PipelineError as exc:
        return str(exc)
    return None


def exit_on_error(config_name: str) -> None:
    """Entry points call this before their @hydra.main function: one line and exit 1 on a bad command line."""
    import sys

    problem = check(sys.argv[1:], config_name)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)


def check(argv: list[str], config_name: str) -> str | None:
    """The first problem with the command line, as one line, or None (also when it cannot tell)."""
    if any(a.split("=")[0] in _SKIP_IF for a in argv):
        return None
    multirun = any(a in ("-m", "--multirun") for a in argv)
    args = [a for a in argv if not a.startswith("-")]
    moved = _old_overlay(args, config_name)
    if moved:
        return moved
    try:
        variants = _variants(args)
    except HydraException:
        return None  # a syntax error: Hydra's own message points at the character
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE):
            for overrides in variants:
                try:
                    cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
                except (HydraException, OmegaConfBaseException) as exc:
                    return _one_line(exc)
                problem = _input_problem(cfg, config_name)
                if problem:
                    return problem
                key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
                out = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
                blocked = _unwritable(str(out)) if out else None
                if blocked:
                    return f"output dir {out} cannot be written ({blocked}); set {key}=<a writable dir>"
    except Exception:  # a check that cannot run must not block a run Hydra may accept
        return None
    finally:
        GlobalHydra.instance().clear()
    return None
