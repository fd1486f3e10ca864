"""`python -m unet_pipeline.soup A.pth B.pth [...] -o soup.pth`: the uniform average of checkpoints' weights
(unet_pipeline/training/soup.py), written in milesial's format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet_pipeline.core import PipelineError
from unet_pipeline.model import read_checkpoint, save_milesial
from unet_pipeline.training import average_states


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_pipeline.soup", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="milesial-format .pth files of one architecture")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where the averaged weights are written")
    args = parser.parse_args(argv)
    try:
        if any(args.output.resolve() == c.resolve() for c in args.checkpoints):
            raise PipelineError(f"-o {args.output} is one of the inputs: write the average to a new file")
        state = average_states([read_checkpoint(c)[0] for c in args.checkpoints])
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    save_milesial(state, args.output)
    print(f"averaged {len(args.checkpoints)} checkpoints into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
