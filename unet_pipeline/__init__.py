"""unet-pipeline: declarative export -> engine build -> inference -> Dice/speed for the Carvana UNet."""

__version__ = "0.1.0"
