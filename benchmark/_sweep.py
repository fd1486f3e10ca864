"""Shared by the benchmark scripts: run one pipeline sweep, read its table, print ratios against a reference row."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED_CARVANA = REPO.parent / "shared" / "data" / "carvana"


def script_overrides(argv: list[str], doc: str | None) -> list[str]:
    """A benchmark script's arguments: Hydra overrides passed to every sweep; `-h`/`--help` prints `doc`."""
    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        raise SystemExit(0)
    flags = [a for a in argv if a.startswith("-") or ("=" not in a and not a.startswith("~"))]
    if flags:
        raise SystemExit(f"error: {' '.join(flags)}: the script takes Hydra overrides (key=value) only; see --help")
    return argv


def data_overrides(argv: list[str]) -> list[str]:
    """Real Carvana with the bundled Carvana model where ../shared (or $CARVANA_DATASETS_PATH) exists, else the demo."""
    if any(a.startswith(("model=", "data=", "data.root=")) for a in argv):
        return []
    if os.environ.get("CARVANA_DATASETS_PATH"):
        return ["model=unet_carvana_small"]
    if (SHARED_CARVANA / "imgs").is_dir():
        return ["model=unet_carvana_small", f"data.root={SHARED_CARVANA}"]
    return []


def sweep_data_overrides(sweep: list[str], argv: list[str]) -> list[str]:
    """`data_overrides`, less its model where the sweep itself chooses the model (e.g. one per input size)."""
    sweeps_model = any(a.startswith("model=") for a in sweep)
    return [a for a in data_overrides(argv) if not (sweeps_model and a.startswith("model="))]


def run_sweep(name: str, sweep: list[str], argv: list[str]) -> pd.DataFrame:
    """`python -m unet_pipeline -m <sweep> <argv>` into outputs/benchmark/<name>-<time>; its results.csv."""
    out = REPO / "outputs" / "benchmark" / f"{name}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    command = [
        sys.executable,
        "-m",
        "unet_pipeline",
        "-m",
        *sweep,
        *sweep_data_overrides(sweep, argv),
        *argv,
        f"hydra.sweep.dir={out}",
        "progress=false",
    ]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=REPO, check=False)  # failed rows are part of the answer
    if not (out / "results.csv").is_file():
        raise SystemExit(f"error: the sweep wrote no table ({out / 'results.csv'}): its message is above")
    frame = pd.read_csv(out / "results.csv")
    frame.attrs["sweep_dir"] = out  # where each job's files are: <sweep_dir>/<job_dir>/
    return frame


def ratio_table(frame: pd.DataFrame, reference: pd.Series, label: str) -> str:
    """Each job's throughput (engine-only and end-to-end) and Dice, with ratios against the reference row."""
    ref_engine = reference["benchmark.engine.throughput_ips"]
    ref_e2e = reference["benchmark.end_to_end.throughput_ips"]
    rows = []
    for _, r in frame.iterrows():
        engine, e2e = r.get("benchmark.engine.throughput_ips"), r.get("benchmark.end_to_end.throughput_ips")
        rows.append(
            {
                "engine": r["job.engine"],
                "precision": r["job.precision"],
                "batch": r["job.batch"],
                "status": r["status"],
                "dice": r.get("metrics.dice"),
                "p50 ms": r.get("benchmark.engine.latency_ms.p50"),
                "img/s": engine,
                f"x vs {label}": engine / ref_engine if pd.notna(engine) else None,
                "img/s e2e": e2e,
                f"e2e x vs {label}": e2e / ref_e2e if pd.notna(e2e) else None,
                "error": r["error"] if isinstance(r.get("error"), str) else "",
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g", missingval="-")


def save_table(table: pd.DataFrame, machine: str, name: str, command: str) -> Path:
    """A benchmark script's table as a committed result: docs/benchmarks/results/<machine>/<name>/table.csv
    with the machine's facts beside it (`python docs/generate.py` renders it on the machine's page)."""
    import json

    from unet_pipeline.core import library_versions, machine_info

    target = REPO / "docs" / "benchmarks" / "results" / machine / name
    target.mkdir(parents=True, exist_ok=True)
    table.to_csv(target / "table.csv", index=False)
    facts = machine_info()
    about = {key: facts[key] for key in ("cpu_model", "cpu_count", "cpu_flags")}
    about |= {"versions": library_versions(), "measured": time.strftime("%Y-%m-%d"), "command": command}
    (target / "machine.json").write_text(json.dumps(about, indent=2) + "\n")
    return target
