"""GA501: a target compared with a reference implementation (``--reference``)."""
import torch.nn.functional as F

import gradaudit


@gradaudit.activation
def tanh_gelu(x):
    """GELU by its tanh approximation (PyTorch's own, ``approximate="tanh"``). Alone it is a
    correct smooth function (pass); with ``--reference torch.nn.functional:gelu`` (the exact,
    erf GELU) its values and gradients differ by up to about 5e-4 and 2e-3 near |x| = 2 (GA501 fail)."""
    return F.gelu(x, approximate="tanh")
