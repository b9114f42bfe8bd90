"""Inline suppressions (`# gradaudit: ignore[CODE] reason`) and warnings raised by a target.

`masked_relu` creates -0.0 (GA203 warn) but says why that is fine, on its def line: it passes,
and the JSON keeps the silenced finding with "suppressed": true. `masked_relu_no_reason`
silences the same code without a reason: it passes too, with a GA409 info. `warning_relu`
raises a UserWarning on every call: one GA408 info finding, nothing on stderr.
"""
import warnings

import torch

import gradaudit


@gradaudit.activation  # gradaudit: ignore[GA203, GA204] the sign of zero is never read downstream
def masked_relu(x):
    return x * (x > 0).to(x.dtype)


def masked_relu_no_reason(x):  # gradaudit: ignore[GA203,GA204]
    return x * (x > 0).to(x.dtype)


def warning_relu(x):
    warnings.warn("warning_relu: this activation is deprecated, use torch.relu", UserWarning)
    return torch.relu(x)
