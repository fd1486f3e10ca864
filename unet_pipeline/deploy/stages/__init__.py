"""The stages of one job, in the order the job runs them: select, export, calibrate and quantize, verify,
evaluate (fed by `feed`), benchmark, save."""
