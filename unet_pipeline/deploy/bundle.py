"""Bundles: a job's engine artifact as a self-contained directory a deployment can take to production.

Why: the artifact a sweep chose lives in the content-addressed cache, and what it expects (input size, resize,
layout, where normalization happens), how its output becomes a mask, what CPU class its int8 was built for and
what it measured are spread over result.json, plan.json and the config. A bundle puts the files and that contract
in one place (`bundle.json`), with the SHA-256 of every file and the commands that reproduce it, and is checked
when loaded: a changed file, another engine version, or int8 built for a CPU class that saturates on this one is
refused in one line.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from unet_pipeline.config import PipelineConfig
from unet_pipeline.core import PipelineError, file_sha256, isa, write_json
from unet_pipeline.data import Preprocessing
from unet_pipeline.deploy.cache import MANIFEST, verify_entry
from unet_pipeline.deploy.spec import build_spec, instantiate_engine
from unet_pipeline.engines import BuildSpec, Engine
from unet_pipeline.record import RESULT_FILE

BUNDLE_FILE, ENGINE_DIR, FORMAT = "bundle.json", "engine", 1
VENDOR_SECONDS = 10  # the reproduce command's benchmark_app / mm_run duration


@dataclass
class Bundle:
    """A loaded, verified bundle: the engine and request to load its artifact with, and what a caller must know."""

    path: Path
    contract: dict[str, Any]  # bundle.json
    config: DictConfig  # the job's resolved config, under the pipeline's schema
    engine: Engine
    spec: BuildSpec
    artifact: Path
    notes: list[str] = field(default_factory=list)  # what loading found worth saying (never a refusal)

    @property
    def prep(self) -> Preprocessing:
        return Preprocessing.of(self.config.model, self.config.data)


def make_bundle(job_dir: Path, out_dir: Path) -> Path:
    """Write `out_dir` (new, or empty) from a completed job: its engine artifact, its record and bundle.json.
    Written into a temporary directory beside `out_dir` and renamed: a killed run leaves no half bundle."""
    record = _completed_record(job_dir)
    entry, artifact = _artifact_entry(record)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PipelineError(f"-o {out_dir} is not empty: give a new directory (a bundle is never written over files)")
    tmp = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        shutil.copytree(entry, tmp / ENGINE_DIR, ignore=shutil.ignore_patterns(MANIFEST, ".*"))
        shutil.copy2(job_dir / RESULT_FILE, tmp / RESULT_FILE)
        bundled = tmp / ENGINE_DIR / artifact.relative_to(entry)
        contract = _contract(job_dir, record, bundled.relative_to(tmp), _vendor_command(record, bundled, out_dir))
        contract["files"] = {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json(tmp / BUNDLE_FILE, contract)
        for written in (tmp / BUNDLE_FILE, tmp / RESULT_FILE):
            written.chmod(0o644)  # shipped to other users and machines: readable, as the engine files are
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def load_bundle(path: Path) -> Bundle:
    """The bundle at `path`, verified: every file as bundled, this machine's engine version, and an int8 build
    that does not saturate on this CPU; anything else is a one-line PipelineError naming the fix."""
    contract = _read_contract(path)
    for rel, digest in contract["files"].items():
        file = path / rel
        if not file.is_file() or file_sha256(file) != digest:
            raise PipelineError(f"bundle {path}: {rel} is missing or changed since it was bundled; re-make the bundle")
    config = OmegaConf.merge(OmegaConf.structured(PipelineConfig), contract["config"])
    engine = instantiate_engine(config)
    built, here = contract["engine"]["version"], engine.version()
    if built != here:
        raise PipelineError(
            f"bundle {path} was built with {engine.name} {built}, this machine has {here}: rebuild it here with "
            f"`{contract['reproduce']['pipeline']}` and bundle that job"
        )
    notes = _check_int8(path, contract)
    spec = build_spec(config)
    return Bundle(path, contract, config, engine, spec, path / contract["engine"]["artifact"], notes)


def _check_int8(path: Path, contract: dict[str, Any]) -> list[str]:
    """Refuse int8 built with full 8-bit weights where this CPU's u8 x s8 sums saturate (the cache keys builds by
    CPU class for the same reason); note the reverse, which runs correctly."""
    int8 = contract.get("int8")
    if not int8 or int8.get("runs_on") != "cpu":
        return []
    host = isa.host()
    if host.saturates and int8["overflow_fix"] != "enable":
        raise PipelineError(
            f"bundle {path}: its int8 was built for a {int8['cpu_class']} CPU (8-bit weights), and this CPU "
            f"saturates u8 x s8 sums ({host.describe()}): rebuild it here with `{contract['reproduce']['pipeline']}`"
        )
    if not host.saturates and int8["overflow_fix"] == "enable":
        kind = int8["cpu_class"]
        return [f"int8 built with 7-bit weights for a saturating CPU ({kind}); this CPU does not need them"]
    return []


def _read_contract(path: Path) -> dict[str, Any]:
    try:
        contract = json.loads((path / BUNDLE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{path} is not a bundle ({BUNDLE_FILE} unreadable: {type(exc).__name__})") from None
    if contract.get("format") != FORMAT:
        raise PipelineError(f"bundle {path} has format {contract.get('format')}; this version reads format {FORMAT}")
    return contract


def _completed_record(job_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((job_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        raise PipelineError(f"{job_dir} holds no readable {RESULT_FILE}: give a job's directory") from None
    if record.get("status") != "completed":
        raise PipelineError(f"job {job_dir} did not complete ({record.get('status')}): bundle a completed job")
    return record


def _artifact_entry(record: dict[str, Any]) -> tuple[Path, Path]:
    """(the directory holding the artifact and what it needs, the artifact), verified against its manifest."""
    artifact = Path(record["cache"]["engine"]["path"])
    entry = artifact.parent
    while entry != entry.parent and not (entry / MANIFEST).is_file() and entry.name != "engine":
        entry = entry.parent
    if (entry / MANIFEST).is_file() and verify_entry(entry) is None:
        raise PipelineError(f"the engine artifact in {entry} changed since the job built it: re-run the job")
    if not artifact.is_file():
        raise PipelineError(f"the job's engine artifact {artifact} is gone (cache cleared?): re-run the job")
    return entry, artifact


def _vendor_command(record: dict[str, Any], bundled: Path, out_dir: Path) -> list[str] | None:
    """The vendor tool's command on the bundled artifact, with paths as they will be after the rename."""
    config = OmegaConf.merge(OmegaConf.structured(PipelineConfig), record["config"])
    tool = instantiate_engine(config).vendor_benchmark(bundled, build_spec(config), VENDOR_SECONDS)
    if tool is None:
        return None
    return [part.replace(str(bundled.parents[1]), str(out_dir)) for part in tool[0]]


def _contract(job_dir: Path, record: dict[str, Any], artifact: Path, vendor: list[str] | None) -> dict[str, Any]:
    """bundle.json: what goes in, what comes out, what it is, what it measured, and how to make it again."""
    config, job = record["config"], record["job"]
    uint8 = job["input_format"] == "uint8_nhwc"
    quant = record.get("quantization") or {}
    overflow = quant.get("overflow_fix") or {}
    return {
        "format": FORMAT,
        "created_at": dt.datetime.now().isoformat(timespec="seconds"),
        "source_job": str(job_dir.resolve()),
        "model": {"name": job["model"], "checkpoint_sha256": job["checkpoint_sha256"]},
        "engine": {
            "name": job["engine"],
            "version": job["engine_version"],
            "settings": record.get("engine_settings"),
            "artifact": str(artifact),
        },
        "precision": {"asked": job["precision"], "compiled": record.get("compiled")},
        "input": {
            "frame_size_measured": [config["data"]["frame_height"], config["data"]["frame_width"]],
            "model_input_hw": job["input_size"],
            "resize": job["resize"],
            "decode": job["decode"],
            "color": "RGB",
            "layout": "NHWC" if uint8 else "NCHW",
            "dtype": "uint8" if uint8 else "float32",
            "normalization": "in the graph (raw pixels in)" if uint8 else "on the host: pixels / 255, in [0, 1]",
            "align": job["align"],
        },
        "output": {
            "logits": "float32 (N, classes, H, W) at the model input size",
            "classes": config["model"]["n_classes"],
            "mask": "logits upsampled bilinearly (half-pixel centres) to the frame's size, then argmax; 1 = car",
        },
        "shape": {"mode": job["shape"], "batch": job["batch"], "batch_range": job["batch_range"]},
        "int8": None
        if not overflow
        else {
            "cpu_class": overflow["cpu"]["int8_kind"],
            "overflow_fix": overflow["chosen"],
            "runs_on": overflow.get("runs_on", "cpu"),
        },
        "measured": _measured(job_dir, record),
        "reproduce": {"pipeline": " ".join(["python -m unet_pipeline", *job["overrides"]]), "vendor": vendor},
        "config": config,
    }


def _measured(job_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Dice, full-resolution Dice, the drop against fp32 with its interval (from the sweep's table, where the job
    ran in one), speed and latency, and the machine they were measured on."""
    bench = record["benchmark"]
    engine = bench.get("engine") or {}
    measured = {
        **record["metrics"],
        "engine_ips": engine.get("throughput_ips"),
        "e2e_ips": (bench.get("end_to_end") or {}).get("throughput_ips"),
        "latency_ms": {k: (engine.get("latency_ms") or {}).get(k) for k in ("p50", "p99")},
        "machine": record["machine"],
    }
    table = job_dir.parent / "results.csv"
    if table.is_file():
        rows = pd.read_csv(table, dtype={"job_dir": str})
        row = rows[rows["job_dir"] == job_dir.name]
        if len(row) and pd.notna(row.iloc[0].get("dice_delta_ci_low")):
            first = row.iloc[0]
            measured["delta_vs_fp32"] = {
                "mean": float(first["dice_delta_vs_fp32"]),
                "ci95": [float(first["dice_delta_ci_low"]), float(first["dice_delta_ci_high"])],
                "worst_image": float(first["worst_image_delta_vs_fp32"]),
            }
    return measured
