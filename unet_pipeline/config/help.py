"""`--help`'s list of groups, generated from conf/ so it never goes stale, folded to 100 columns.

Hydra's own `$APP_CONFIG_GROUPS` prints each group's options on one line (over 160 characters for `recipe`) and
has no word on what a group is for; this reads the option files and the comments on the primary config's
defaults list (`- model: unet_demo  # what it is`), so the words are written once, beside the defaults."""

from __future__ import annotations

import re
import textwrap
from importlib.resources import files
from importlib.resources.abc import Traversable

WIDTH = 100
_DEFAULT = re.compile(r"^\s*-\s+(?P<group>[\w/]+):\s*(?P<option>\w+)\s*(?:#\s*(?P<words>.*))?$")
# Groups the primary config does not list: they come with another choice, or override it.
_IMPLIED = {
    "data": "the dataset; each model picks its own (data.root=<Carvana dir> for real images)",
    "engine": "the runtime; the device picks it (cpu: openvino), engine=... overrides",
}
_HIDDEN = {"hydra", "train"}  # Hydra's own groups (--hydra-help); train/: the training entry point's own groups
_SHOWN = {"train": ("model", "data", "train/experiment")}  # entry points that use only some groups


def _groups(conf: Traversable, config_name: str) -> list[str]:
    """The groups an entry point's --help lists: its own, or every directory of conf/ but Hydra's and train's."""
    if config_name in _SHOWN:
        return list(_SHOWN[config_name])
    return sorted(d.name for d in conf.iterdir() if d.is_dir() and d.name[0] != "_" and d.name not in _HIDDEN)


def groups_help(config_name: str = "pipeline", width: int = WIDTH) -> str:
    """Two lines per group: what it is for, then its options with the default marked."""
    conf = files("unet_pipeline.conf")
    defaults: dict[str, tuple[str, str]] = {}
    for line in conf.joinpath(f"{config_name}.yaml").read_text().splitlines():
        match = _DEFAULT.match(line)
        if match:
            defaults[match["group"]] = (match["option"], (match["words"] or "").strip())
    out = []
    for group in _groups(conf, config_name):
        default, words = defaults.get(group, ("", _IMPLIED.get(group, "")))
        folder = conf.joinpath(*group.split("/"))
        options = sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))
        listed = ", ".join(f"{o} (default)" if o == default and len(options) > 1 else o for o in options)
        out.append(
            textwrap.fill(words or group, width, initial_indent=f"  {group + ' ':<12}", subsequent_indent=" " * 14)
        )
        out.append(textwrap.fill(listed, width, initial_indent=" " * 14, subsequent_indent=" " * 14))
    return "\n".join(out)
