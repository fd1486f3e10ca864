"""Record: `result.json`, the one typed record every job writes and every table, launcher and tracker reads.

Imports no torch and no engine, so that reading records (tables, MLflow, the SLURM launcher) stays light."""

from unet_pipeline.record.figures import BenchmarkFigures, EndToEnd, EngineTiming, VendorRun
from unet_pipeline.record.identity import job_identity
from unet_pipeline.record.load import load_records
from unet_pipeline.record.schema import PER_IMAGE_FILE, RESULT_FILE, JobRecord, completed_before, write_per_image

__all__ = [
    "PER_IMAGE_FILE",
    "RESULT_FILE",
    "BenchmarkFigures",
    "EndToEnd",
    "EngineTiming",
    "JobRecord",
    "VendorRun",
    "completed_before",
    "job_identity",
    "load_records",
    "write_per_image",
]
