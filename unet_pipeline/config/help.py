"""`--help`'s list of groups, generated from conf/ so it never goes stale, folded to 100 columns.

Hydra's own `$APP_CONFIG_GROUPS` prints each group's options on one line (over 160 characters for `recipe`) and
has no word on what a group is for; this reads the option files and the comments on the primary config's
defaults list (`- model: unet_demo  # what it is`), so the words are written once, beside the defaults."""

from __future__ import annotations

import re
import textwrap
from importlib.resources import files

WIDTH = 100
_DEFAULT = re.compile(r"^\s*-\s+(?P<group>\w+):\s*(?P<option>\w+)\s*(?:#\s*(?P<words>.*))?$")
# Groups the primary config does not list: they come with another choice, or override it.
_IMPLIED = {
    "data": "the dataset; each model picks its own (data.root=<Carvana dir> for real images)",
    "engine": "the runtime; the device picks it (cpu: openvino), engine=... overrides",
}
_HIDDEN = {"hydra"}  # Hydra's own groups: --hydra-help
_SHOWN = {"train": {"model", "data", "experiment"}}  # entry points that use only some groups
_TRAIN_EXPERIMENTS = "train_"  # experiment files for `unet_pipeline.train` start so


def groups_help(config_name: str = "pipeline", width: int = WIDTH) -> str:
    """Two lines per group: what it is for, then its options with the default marked."""
    conf = files("unet_pipeline.conf")
    defaults: dict[str, tuple[str, str]] = {}
    for line in conf.joinpath(f"{config_name}.yaml").read_text().splitlines():
        match = _DEFAULT.match(line)
        if match:
            defaults[match["group"]] = (match["option"], (match["words"] or "").strip())
    out = []
    groups = sorted(d.name for d in conf.iterdir() if d.is_dir() and not d.name.startswith("_"))
    shown = _SHOWN.get(config_name)
    for group in (g for g in groups if g not in _HIDDEN and (shown is None or g in shown)):
        default, words = defaults.get(group, ("", _IMPLIED.get(group, "")))
        options = sorted(
            f.name.removesuffix(".yaml") for f in conf.joinpath(group).iterdir() if f.name.endswith(".yaml")
        )
        if group == "experiment" and config_name == "train":
            options, words = [o for o in options if o.startswith(_TRAIN_EXPERIMENTS)], "training overlays"
        listed = ", ".join(f"{o} (default)" if o == default and len(options) > 1 else o for o in options)
        out.append(textwrap.fill(words or group, width, initial_indent=f"  {group:<12}", subsequent_indent=" " * 14))
        out.append(textwrap.fill(listed, width, initial_indent=" " * 14, subsequent_indent=" " * 14))
    return "\n".join(out)
