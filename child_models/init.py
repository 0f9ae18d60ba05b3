"""Weight initialisation shared by every space: Kaiming (He) normal, applied explicitly.

PyTorch's default ``Conv2d``/``Linear`` init is a Kaiming-*uniform* with ``a=sqrt(5)``
(variance 1/(3 fan_in)), which under-scales ReLU networks. NAS papers (ENAS, MnasNet,
MobileNetV3 via torchvision) re-initialise explicitly; so do we, for the supernet and
for every standalone build, so that a child trained from scratch starts like the
supernet's candidates did.
"""

from __future__ import annotations

from torch import nn

_FAN_MODES = ("fan_in", "fan_out")


def kaiming_init_(module: nn.Module, *, conv_mode: str = "fan_out") -> nn.Module:
    """Re-initialise every conv, linear and norm layer inside ``module`` in place.

    - ``Conv1d/2d/3d``: Kaiming normal (ReLU gain) with ``conv_mode`` (torchvision's
      MobileNet/ResNet use ``"fan_out"``; TensorFlow's ``he_normal``, as in ENAS, is
      ``"fan_in"``); bias zero. A batchnorm follows every such conv here, so the mode
      mostly sets the gradient scale.
    - ``Linear``: Kaiming normal with ``fan_in`` (keeps activations, and the logits of
      the final classifier, at unit scale at init); bias zero.
    - ``BatchNorm``/``GroupNorm``/``LayerNorm`` with affine parameters: weight 1, bias 0.

    Returns ``module`` so it can be used inline.
    """
    if conv_mode not in _FAN_MODES:
        raise ValueError(f"conv_mode must be one of {_FAN_MODES}, got {conv_mode!r}")
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return module
