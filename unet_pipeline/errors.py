"""The one exception type the entrypoints turn into a single `error: ...` line."""


class PipelineError(Exception):
    """A problem the user can fix (bad input, config or environment); the message names the fix.

    Raised instead of letting a library traceback escape: the job records it in result.json and the
    entrypoint prints it as one line.
    """


class BadSampleError(PipelineError):
    """One image or mask that cannot be used (corrupt, truncated, wrong size or values).

    Separate so that `data.on_bad_sample=skip` can drop that sample (counted and listed in the result)
    while every other error still stops the job.
    """
