"""The one exception type the entrypoints turn into a single `error: ...` line."""


class PipelineError(Exception):
    """A problem the user can fix (bad input, config or environment); the message names the fix.

    Raised instead of letting a library traceback escape: the job records it in result.json and the
    entrypoint prints it as one line.
    """
