"""The stages of one job, in the order the job runs them: image_sets (which images), export, calibrate and
quantize, verify, evaluate (fed by `feed`), benchmark, save."""
