"""torch.library custom ops (GA407): each is registered under the namespace
``gradaudit_samples`` (torch.library allows re-registering a name, so importing this file
twice, under two module names, does not clash). Discovery finds ``CustomOpDef`` objects."""
import torch
from torch import Tensor


def _save_input(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _relu_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.where(x > 0, grad, torch.zeros_like(grad))


@torch.library.custom_op("gradaudit_samples::relu", mutates_args=())
def relu(x: Tensor) -> Tensor:
    """A correct custom ReLU: clamp forward, register_autograd and register_fake (pass)."""
    return x.clamp(min=0)


@relu.register_fake
def _relu_fake(x):
    return torch.empty_like(x)


relu.register_autograd(_relu_backward, setup_context=_save_input)


@torch.library.custom_op("gradaudit_samples::relu_without_fake", mutates_args=())
def relu_without_fake(x: Tensor) -> Tensor:
    """The same ReLU without register_fake: torch.compile, export and FX tracing cannot
    trace it (GA407, opcheck's fake-tensor and aot_dispatch tests)."""
    return x.clamp(min=0)


relu_without_fake.register_autograd(_relu_backward, setup_context=_save_input)


@torch.library.custom_op("gradaudit_samples::relu_mutating_input", mutates_args=())
def relu_mutating_input(x: Tensor) -> Tensor:
    """A ReLU that clamps its input in place and returns a copy while declaring
    mutates_args=(): the schema lies, so compiled graphs may reorder or drop the write
    (GA407, opcheck's schema test; GA401 sees the mutation too)."""
    return x.clamp_(min=0).clone()


@relu_mutating_input.register_fake
def _relu_mutating_fake(x):
    return torch.empty_like(x)


relu_mutating_input.register_autograd(_relu_backward, setup_context=_save_input)
