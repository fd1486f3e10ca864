"""The one exception type the entrypoints turn into a single `error: ...` line."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix (bad input, config or environment); the message names the fix.

    Raised instead of letting a library traceback escape: the job records it in result.json and the
    entrypoint prints it as one line.
    """


class BudgetNotMet(PipelineError):
    """Accuracy-aware quantization found no int8 model within `calibration.max_dice_drop`.

    Carries what was tried (`accuracy_control`, as a completed job records it), so the failed job's
    result.json still says how close each configuration came: minutes of search are not lost with the error.
    """

    def __init__(self, message: str, accuracy_control: dict | None = None):
        super().__init__(message)
        self.accuracy_control = accuracy_control or {}


class BadSampleError(PipelineError):
    """One image or mask that cannot be used (corrupt, truncated, wrong size or values).

    Separate so that `data.on_bad_sample=skip` can drop that sample (counted and listed in the result)
    while every other error still stops the job.
    """


def one_line(exc: BaseException) -> str:
    """A PipelineError's message, or the exception type and first line of anything unexpected."""
    if isinstance(exc, PipelineError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''} (unexpected; HYDRA_FULL_ERROR=1 shows the traceback)"
