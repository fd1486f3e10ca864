"""unet_pipeline's Hydra launcher plugin (`hydra/launcher=slurm`)."""

from __future__ import annotations


def ensure_registered() -> None:
    """Make Hydra know the launcher even where its plugin scan cannot see it.

    Hydra finds plugins by walking `hydra_plugins.__path__`; a setuptools editable install (`pip install -e`)
    exposes our part of that namespace through an import hook the walk does not list, so the class is
    registered by hand. A regular install is found by the scan and this is a no-op.
    """
    from hydra.core.plugins import Plugins

    from .slurm_launcher import SlurmLauncher

    name = f"{SlurmLauncher.__module__}.{SlurmLauncher.__name__}"
    Plugins.instance().class_name_to_class.setdefault(name, SlurmLauncher)
