"""Pipeline stages, one job each: export -> calibrate -> build -> evaluate."""
