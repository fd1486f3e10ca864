"""`python -m unet_pipeline.bundle <job dir> -o <dir>`: a job's engine artifact as a self-contained, checked bundle
(bundle.json: input and output contract, precision, CPU class, figures, SHA-256 of every file, how to rebuild it);
`python -m unet_pipeline.segment bundle=<dir> ...` runs it (unet_pipeline/deploy/bundle.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet_pipeline.core import PipelineError
from unet_pipeline.deploy.bundle import make_bundle


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_pipeline.bundle", description=__doc__.splitlines()[0])
    parser.add_argument("job_dir", type=Path, help="a completed job's directory (a run dir, or a sweep's <n>/)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="a new (or empty) directory for the bundle")
    args = parser.parse_args(argv)
    try:
        out = make_bundle(args.job_dir, args.output)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"bundle: {out} (bundle.json says what it takes, gives and measured; segment with "
          f"python -m unet_pipeline.segment bundle={out} input=<images> output=<dir>)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
