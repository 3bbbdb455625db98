"""Network architectures by name (`build_model`), the kit's model file format, and the CIFAR ResNet-34."""

from .cifar_resnet import CifarResNet34
from .classifiers import (
           ARCHITECTURES,
           PreActResNet,
           SmallCNN,
           WideResNet,
           build_model,
           load_model,
           save_model,
           wrn_state_dict_from_sln,
)

__all__ = ["ARCHITECTURES", "CifarResNet34", "PreActResNet", "SmallCNN", "WideResNet", "build_model", "load_model",
           "save_model", "wrn_state_dict_from_sln"]
