"""Network architectures by name (`build_model`), the kit's model file format, and the CIFAR ResNet-34."""

from .cifar_resnet import CifarResNet34
from .classifiers import (
           ARCHITECTURES,
           WIDTH_SCALABLE,
           CasCNN,
           CasResNet50,
           PreActResNet,
           ResNet9,
           SmallCNN,
           WideResNet,
           architecture_kwargs,
           build_model,
           load_model,
           preact_state_from_dividemix,
           save_model,
           wrn_state_dict_from_sln,
)

__all__ = ["ARCHITECTURES", "WIDTH_SCALABLE", "CasCNN", "CasResNet50", "CifarResNet34", "PreActResNet", "ResNet9",
           "SmallCNN", "WideResNet", "architecture_kwargs", "build_model", "load_model", "preact_state_from_dividemix", "save_model",
           "wrn_state_dict_from_sln"]
