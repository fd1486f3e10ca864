"""`python -m unet_pipeline.soup A.pth B.pth [...] -o soup.pth`: the uniform average of checkpoints' weights.

Why: runs fine-tuned from the same start usually sit in one basin of the loss, and the average of their weights
(a "model soup", Wortsman et al. 2022) often generalises better than any one of them, at no cost at inference: it
is one UNet of the same shape, milesial format. Whether it is better is for validation to say
(`python -m unet_pipeline.validate model.checkpoint=soup.pth ...`), never the evaluation cars."""

from __future__ import annotations

import torch

from unet_pipeline.core import PipelineError


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state_dicts with the same keys and shapes; BatchNorm's step counters (integers)
    keep the largest count."""
    if len(states) < 2:
        raise PipelineError("give two or more checkpoints to average")
    keys = set(states[0])
    for i, state in enumerate(states[1:], start=1):
        if set(state) != keys:
            raise PipelineError(f"checkpoint {i + 1} has other keys than the first: average the same architecture")
    averaged = {}
    for key in states[0]:
        tensors = [s[key] for s in states]
        if any(t.shape != tensors[0].shape for t in tensors):
            raise PipelineError(f"{key} differs in shape between checkpoints: average the same base_width")
        if tensors[0].is_floating_point():
            averaged[key] = torch.stack([t.float() for t in tensors]).mean(0).to(tensors[0].dtype)
        else:
            averaged[key] = torch.stack(tensors).max(0).values
    return averaged
