"""Segment against the evaluation job of the same configuration, and its memory over 200 and 2,000 images.

    python benchmark/segment.py                        # bundled Carvana model on ../shared data (else the demo)
    python benchmark/segment.py precision=force_float32  # any pipeline override passes through

Runs one evaluation job (int8 by default), bundles it, segments the job's own evaluation images with the bundle
(PNG masks, cold: decoded from disk like the job's inference pass), and prints segment's img/s against the job's
end-to-end img/s (target >= 0.9). Then segments 200 and 2,000 images (the same frames linked again and again) in
fresh processes and prints each one's peak RSS: it must not grow with the number of images.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from _sweep import REPO, run_sweep, script_overrides

JOB = ["precision=qint8_mixed_float16", "batch=1", "benchmark.repeats=1"]
PEAK_RSS = (
    "import atexit, resource, runpy, sys; "
    "atexit.register(lambda: print(f'peak_rss_kb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}')); "
    "sys.argv = ['segment', *sys.argv[1:]]; runpy.run_module('unet_pipeline.segment', run_name='__main__')"
)


def segment(bundle: Path, images: Path, out: Path) -> tuple[dict, int]:
    """One segment run in a fresh process: its segment.json result and its peak RSS in kB."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-c", PEAK_RSS, f"bundle={bundle}", f"input={images}", f"output={out}",
               "progress=false", f"hydra.run.dir={out.parent / (out.name + '-hydra')}"]  # fmt: skip
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"error: segment failed: {proc.stderr.strip().splitlines()[-1]}")
    peak = int(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("peak_rss_kb")))
    return json.loads((out / "segment.json").read_text())["result"], peak


def linked(frames: list[Path], count: int, folder: Path) -> Path:
    """`count` images in `folder`: the frames linked over and over under distinct names."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        frame = frames[i % len(frames)]
        (folder / f"{i:05d}_{frame.name}").symlink_to(frame)
    return folder


def main(argv: list[str]) -> int:
    argv = script_overrides(argv, __doc__)
    given = {a.split("=", 1)[0] for a in argv}
    frame = run_sweep("segment", [a for a in JOB if a.split("=", 1)[0] not in given], argv)
    job = frame.iloc[0]
    if job["status"] != "completed":
        raise SystemExit(f"error: the evaluation job failed: {job['error']}")
    sweep = Path(frame.attrs["sweep_dir"])
    bundle = sweep / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "unet_pipeline.bundle", str(sweep / str(job["job_dir"])), "-o", str(bundle)],
                   cwd=REPO, check=True)  # fmt: skip
    frames = sorted(Path(p) for p in pd.read_csv(sweep / str(job["job_dir"]) / "per_image.csv")["image"])
    same, _ = segment(bundle, linked(frames, len(frames), sweep / "same"), sweep / "out-same")
    e2e = float(job["benchmark.end_to_end.throughput_ips"])
    rows = [{"what": f"evaluation job, e2e ({len(frames)} images)", "img/s": e2e, "x job e2e": 1.0}]
    rows.append({"what": f"segment, PNG masks ({len(frames)} images)", "img/s": same["throughput_ips"],
                 "x job e2e": same["throughput_ips"] / e2e})  # fmt: skip
    for count in (200, 2000):
        result, peak = segment(bundle, linked(frames, count, sweep / f"n{count}"), sweep / f"out-{count}")
        rows.append({"what": f"segment, {count} images", "img/s": result["throughput_ips"],
                     "x job e2e": result["throughput_ips"] / e2e, "peak RSS MB": peak / 1024})  # fmt: skip
    print(f"\n{job['job.engine']} {job['job.precision']} batch {job['job.batch']}, input {job['job.input_size']}; "
          f"{job.get('machine.cpu_model')} ({platform.machine()}), {job.get('machine.cpu_count')} cores")  # fmt: skip
    table = pd.DataFrame(rows).astype(object)
    print(table.where(table.notna(), None).to_markdown(index=False, floatfmt=".4g", missingval="-"))
    print("target: segment >= 0.9 x the job's end to end; peak RSS at 2,000 images ~ at 200")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
