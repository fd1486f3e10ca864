"""Cross-engine agreement on one fixed batch of real images, every engine x precision vs PyTorch fp32.

    python benchmark/agreement.py                   # bundled Carvana model on ../shared data (else the demo)
    python benchmark/agreement.py model=unet_demo   # synthetic demo data and model
    python benchmark/agreement.py data.root=/data/carvana num_images=8

Arguments are pipeline overrides plus num_images=<N> and num_calibration=<N>. Prints a table with max abs
logit difference, flipped pixels and the Dice difference per pair; exits 1 if an fp32 engine disagrees.
"""

from __future__ import annotations

import sys

from _sweep import data_overrides, script_overrides


def main(argv: list[str]) -> int:
    argv = script_overrides(argv, __doc__)
    # the engines load only once the arguments are known to be good (--help stays instant)
    import pandas as pd
    from hydra import compose, initialize_config_module

    from unet_pipeline.config import register_configs
    from unet_pipeline.data import Preprocessing, ensure_configured, input_hw
    from unet_pipeline.deploy.agreement import compare_engines, disagreements, fixed_batch
    from unet_pipeline.model import load_unet

    extra = {k: int(v) for k, v in (a.split("=", 1) for a in argv if a.startswith(("num_images=", "num_calib")))}
    overrides = [a for a in argv if not a.startswith(("num_images=", "num_calib"))]
    overrides = [*data_overrides(overrides), *overrides]
    register_configs()
    with initialize_config_module(version_base="1.3", config_module="unet_pipeline.conf"):
        cfg = compose("pipeline", overrides=overrides)
    ensure_configured(cfg.data)
    net, _ = load_unet(cfg.model, cfg.model.checkpoint)
    hw = input_hw(cfg.model, cfg.data)
    prep = Preprocessing.of(cfg.model, cfg.data)
    images, masks, calibration = fixed_batch(
        cfg.data, hw, extra.get("num_images", 4), extra.get("num_calibration", 16), prep
    )
    print(
        f"model={cfg.model.name} {hw[0]}x{hw[1]}, {len(images)} images from {cfg.data.root}, "
        f"{len(calibration)} calibration images"
    )
    rows = compare_engines(net, images, masks, calibration)
    table = pd.DataFrame(rows)
    print(table.drop(columns=["reason"]).to_markdown(index=False, floatfmt=".3g"))
    for row in rows:
        if row["status"] != "ok" or (row["reason"] and row["reason"] != "reference"):
            print(f"- {row['engine']} {row['precision']}: {row['status']}: {row['reason']}")
    problems = disagreements(rows)
    for line in problems:
        print(f"DISAGREE {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
