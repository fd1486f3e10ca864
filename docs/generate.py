"""Write the docs pages that are generated, never edited: the config reference (from conf/), the CLI reference (from
each command's --help) and the benchmark pages (from the result files committed under docs/benchmarks/results/).

    python docs/generate.py            # rewrite them
    python docs/generate.py --check    # exit 1, naming the page, where a committed page differs (the test suite)
    python docs/generate.py --collect <sweep dir> <machine> <experiment>   # add a measured sweep's results

A measured sweep becomes benchmark figures by `--collect`: its results.csv (the columns the pages show) and its
machine's facts go to docs/benchmarks/results/<machine>/<experiment>/; re-measuring is re-running the sweep and
collecting it again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
CONF = REPO / "conf"
RESULTS = DOCS / "benchmarks" / "results"
GROUP_ORDER = ["model", "data", "precision", "shape", "calibration", "recipe", "device", "engine", "benchmark",
               "logger", "select", "experiment", "train/experiment", "hydra/launcher"]  # fmt: skip
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[\w-]+):\s*(?P<value>[^#]*?)\s*(?:#\s*(?P<comment>.*))?$")
COMMANDS = [
    ("python -m unet_pipeline", ["-m", "unet_pipeline", "--help"]),
    ("python -m unet_pipeline.results", ["-m", "unet_pipeline.results", "--help"]),
    ("python -m unet_pipeline.bundle", ["-m", "unet_pipeline.bundle", "--help"]),
    ("python -m unet_pipeline.segment", ["-m", "unet_pipeline.segment", "--help"]),
    ("python -m unet_pipeline.train", ["-m", "unet_pipeline.train", "--help"]),
    ("python -m unet_pipeline.validate", ["-m", "unet_pipeline.validate", "--help"]),
    ("python -m unet_pipeline.soup", ["-m", "unet_pipeline.soup", "--help"]),
]
# (heading, results.csv column) of the benchmark tables
SHOWN = [
    ("model", "job.model"), ("engine", "job.engine"), ("precision", "job.precision"), ("batch", "job.batch"),
    ("shape", "shape"), ("input", "input"), ("images", "metrics.num_images"), ("Dice", "metrics.dice"),
    ("Δ vs fp32 [95 % CI]", "delta"), ("worst image Δ", "worst_image_delta_vs_fp32"),
    ("Dice full res", "metrics.dice_full"), ("compiled as", "compiled_as"),
    ("img/s", "benchmark.engine.throughput_ips"), ("img/s e2e", "benchmark.end_to_end.throughput_ips"),
    ("e2e / engine", "benchmark.end_to_end.vs_engine"),
    ("full-res Dice ms/img", "benchmark.end_to_end.fullres_ms_per_image"),
    ("p50 ms", "benchmark.engine.latency_ms.p50"), ("p99 ms", "benchmark.engine.latency_ms.p99"),
    ("x fp32", "speedup_vs_fp32"), ("vendor img/s", "benchmark.vendor.throughput_ips"), ("status", "status"),
]  # fmt: skip
TABLE_FILES = ("results.csv", "table.csv")  # a collected sweep's, a benchmark script's
KEPT = [c for _, c in SHOWN if c != "delta"] + ["dice_delta_vs_fp32", "dice_delta_ci_low", "dice_delta_ci_high",
                                                 "job_dir", "error"]  # fmt: skip


# --- config reference -------------------------------------------------------------------------------------------
def _yaml_keys(path: Path) -> tuple[list[str], list[tuple[str, str, str]]]:
    """A config file's leading comment lines and its (dotted key, value, comment) rows (defaults lists skipped)."""
    header: list[str] = []
    rows: list[tuple[str, str, str]] = []
    stack: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#") and not rows and not stack:
            text = line.lstrip("#").strip()
            if not text.startswith("@package"):
                header.append(text)
            continue
        if line.lstrip().startswith("#") and rows:  # a comment continued under the key's own
            key, value, comment = rows[-1]
            rows[-1] = (key, value, f"{comment} {line.strip().lstrip('#').strip()}".strip())
            continue
        match = KEY.match(line)
        if not match:
            continue
        stack = [*stack[: len(match["indent"]) // 2], match["key"]]
        if stack[0] == "defaults" or (stack[0] == "hydra" and path.parent.name != "launcher"):
            continue
        rows.append((".".join(stack), match["value"].strip(), (match["comment"] or "").strip()))
    return header, rows


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell (a pipe ends the cell, <placeholder> would be read as HTML)."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;") if text else ""


def _row(key: str, value: str, comment: str) -> str:
    shown = f"`{value.replace('|', chr(92) + '|')}`" if value else ""
    return f"| `{key}` | {shown} | {_cell(comment)} |"


def _option(group: str, path: Path) -> list[str]:
    header, rows = _yaml_keys(path)
    lines = [f"### `{group}={path.stem}`", "", *([_cell(" ".join(header)), ""] if header else [])]
    if rows:
        lines += ["| key | value | what it sets |", "|---|---|---|"]
        lines += [_row(k, v, c) for k, v, c in rows]
        lines.append("")
    return lines


def config_reference() -> str:
    """docs/reference/config.md: every group, every option, every key with its value and comment."""
    out = ["# Config reference", "",
           "Generated from `conf/` by `python docs/generate.py`: every config group, its options and every key with",
           "its default and the comment beside it. Pick an option with `group=option`, set a key with",
           "`group.key=value`; a typo fails at composition with the valid choices.", ""]  # fmt: skip
    for name in ("pipeline", "segment", "train"):
        header, rows = _yaml_keys(CONF / f"{name}.yaml")
        out += [f"## Primary config `{name}.yaml`", "", _cell(" ".join(header)), "", "| key | value | what it sets |",
                "|---|---|---|", *[_row(k, v, c) for k, v, c in rows], ""]  # fmt: skip
    for group in GROUP_ORDER:
        folder = CONF / group
        out += [f"## Group `{group}`", ""]
        for path in sorted(folder.glob("*.yaml")):
            out += _option(group, path)
    return "\n".join(out).rstrip() + "\n"


# --- CLI reference ----------------------------------------------------------------------------------------------
def cli_reference() -> str:
    """docs/reference/cli.md: each command's --help, as it prints it."""
    out = ["# Command-line reference", "",
           "Generated by `python docs/generate.py` from each command's `--help`.", ""]  # fmt: skip
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    for title, args in COMMANDS:
        proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
        text = proc.stdout.strip().replace(str(REPO) + os.sep, "")
        out += [f"## `{title}`", "", "```text", text, "```", ""]
    return "\n".join(out).rstrip() + "\n"


# --- benchmark pages --------------------------------------------------------------------------------------------
def collect(sweep: Path, machine: str, experiment: str) -> None:
    """Copy a measured sweep's table (the shown columns) and its machine's facts under docs/benchmarks/results."""
    table = pd.read_csv(sweep / "results.csv")
    first = json.loads(next(sweep.glob("*/result.json")).read_text())
    target = RESULTS / machine / experiment
    target.mkdir(parents=True, exist_ok=True)
    table[[c for c in KEPT if c in table]].to_csv(target / "results.csv", index=False)
    facts = {"cpu_model": first["machine"]["cpu_model"], "cpu_count": first["machine"]["cpu_count"],
             "cpu_flags": first["machine"]["cpu_flags"], "versions": first["versions"],
             "measured": first["started_at"][:10], "overrides": _sweep_overrides(sweep)}  # fmt: skip
    (target / "machine.json").write_text(json.dumps(facts, indent=2) + "\n")


def _sweep_overrides(sweep: Path) -> list[str]:
    """The sweep's command line as Hydra recorded it (multirun.yaml), less where it wrote."""
    from omegaconf import OmegaConf

    recorded = OmegaConf.load(sweep / "multirun.yaml").hydra.overrides.task
    kept = [o for o in recorded if not o.startswith(("hydra.sweep.dir", "progress", "force"))]
    return ["data.root=/data/carvana" if o.startswith("data.root=") else o for o in kept]  # where the data were: ours


def _figure(value: object) -> str:
    if isinstance(value, float):
        if pd.isna(value):
            return "-"
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.3g}"
    return "-" if value is None else str(value)


def _benchmark_table(frame: pd.DataFrame) -> list[str]:
    rows = []
    for _, r in frame.iterrows():
        delta = "-"
        if pd.notna(r.get("dice_delta_ci_low")):
            delta = f"{r['dice_delta_vs_fp32']:+.5f} [{r['dice_delta_ci_low']:+.5f}, {r['dice_delta_ci_high']:+.5f}]"
        cells = [delta if c == "delta" else _figure(r.get(c)) for _, c in SHOWN]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return ["| " + " | ".join(h for h, _ in SHOWN) + " |", "|" + "---|" * len(SHOWN), *rows]


def _config_link(experiment: str) -> str:
    """The experiment overlay's entry in the config reference, where the sweep is one; else the whole reference."""
    if (CONF / "experiment" / f"{experiment}.yaml").is_file():
        return f"[experiment={experiment}](../reference/config.md#experiment{experiment})"
    return "[every key it sets](../reference/config.md)"


def _experiment_body(experiment: Path, facts: dict) -> list[str]:
    """A sweep's command and table; or a benchmark script's (its table.csv, every column as it wrote it)."""
    if (experiment / "table.csv").is_file():
        table = pd.read_csv(experiment / "table.csv")
        rows = ["| " + " | ".join(_cell(_figure(v)) for v in r) + " |" for r in table.itertuples(index=False)]
        header = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        return [f"Command: `{facts['command']}`.", "", *header, *rows]
    table = _benchmark_table(pd.read_csv(experiment / "results.csv"))
    command = "python -m unet_pipeline -m " + " ".join(facts["overrides"])
    return [f"Command: `{command}` ({_config_link(experiment.name)}).", "", *table]


def benchmark_pages() -> dict[Path, str]:
    """docs/benchmarks/index.md and one page per measured machine, from the committed result files."""
    machines = sorted(p for p in RESULTS.iterdir() if p.is_dir()) if RESULTS.is_dir() else []
    index = ["# Benchmarks", "",
             "Measured figures, rendered by `python docs/generate.py` from the result files committed under",
             "`docs/benchmarks/results/<machine>/<experiment>/` (one directory per measured machine). Re-measure by",
             "re-running the experiment's sweep on that machine and collecting it",
             "(`python docs/generate.py --collect <sweep dir> <machine> <experiment>`). What each column means:",
             "[outputs](../reference/outputs.md), [timing](../reference/timing.md),",
             "[metrics](../reference/metrics.md).",
             "", "| machine | CPU | experiments |", "|---|---|---|"]  # fmt: skip
    pages: dict[Path, str] = {}
    for machine in machines:
        experiments = sorted(p for p in machine.iterdir() if any((p / f).is_file() for f in TABLE_FILES))
        facts = json.loads((experiments[0] / "machine.json").read_text())
        index.append(f"| [{machine.name}]({machine.name}.md) | {facts['cpu_model']}, {facts['cpu_count']} cores | "
                     + ", ".join(e.name for e in experiments) + " |")  # fmt: skip
        page = [f"# {machine.name}", ""]
        for experiment in experiments:
            facts = json.loads((experiment / "machine.json").read_text())
            versions = ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v)
            page += [f"## {experiment.name}", "",
                     f"{facts['cpu_model']}, {facts['cpu_count']} cores, flags {', '.join(facts['cpu_flags'])}; "
                     f"{versions}; measured {facts['measured']}.", "",
                     *_experiment_body(experiment, facts), ""]  # fmt: skip
        pages[DOCS / "benchmarks" / f"{machine.name}.md"] = "\n".join(page).rstrip() + "\n"
    if not machines:
        index.append("| - | no measured machine yet | - |")
    pages[DOCS / "benchmarks" / "index.md"] = "\n".join(index).rstrip() + "\n"
    return pages


def pages() -> dict[Path, str]:
    return {
        DOCS / "reference" / "config.md": config_reference(),
        DOCS / "reference" / "cli.md": cli_reference(),
        **benchmark_pages(),
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--collect"]:
        collect(Path(argv[1]), argv[2], argv[3])
        argv = []
    stale = []
    for path, text in pages().items():
        if argv == ["--check"]:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"error: generated docs differ from what `python docs/generate.py` writes: {', '.join(stale)}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
