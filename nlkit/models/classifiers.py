"""Network architectures by name, and the kit's checkpoint format for a trained model.

Every model exposes `features(x)` (the penultimate representation, used for t-SNE and
retrieval) and `forward(x)` (class logits).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import UserError, check_choice


class SmallCNN(nn.Module):
    """A compact CNN for small images (digits 8x8, MNIST 28x28): the CPU smoke-profile model."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature_dim = 2 * w
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _WideBlock(nn.Module):
    """SLN's WRN block: pre-activation, biased convs, the stride in the *second* conv, and a 1x1 shortcut
    taken from the raw input when the shape changes (docs/sln.md §2.1)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv_a = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv_b = nn.Conv2d(out_ch, out_ch, 3, stride=stride, padding=1, bias=True)
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=True)
                         if stride != 1 or in_ch != out_ch else nn.Identity())

    def forward(self, x):
        out = self.conv_a(torch.relu(self.bn1(x)))
        out = self.conv_b(torch.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """WRN-28-2 as the SLN code builds it: 1,469,642 parameters for 10 classes. The head BN uses momentum 0.9
    (a Keras-style value kept for fidelity); all other BNs use PyTorch's 0.1."""

    def __init__(self, num_classes: int = 10, depth: int = 28, widen: int = 2, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise UserError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=True)
        blocks, in_ch = [], widths[0]
        for out_ch, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBlock(in_ch, out_ch, stride if i == 0 else 1))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_ch, momentum=0.9)
        self.feature_dim = in_ch
        self.head = nn.Linear(in_ch, num_classes)

    def features(self, x):
        out = torch.relu(self.bn(self.blocks(self.stem(x))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x):
        return self.head(self.features(x))


def wrn_state_dict_from_sln(state_dict: dict) -> dict:
    """A state dict of the SLN code's `networks/wideresnet.py` Wide_ResNet, renamed for `WideResNet`: conv1 ->
    stem, layer{s}.{i} -> blocks.{(s-1)*n+i} (conv1/conv2 -> conv_a/conv_b, shortcut.0 -> shortcut), bn1 -> bn,
    linear -> head. Tensors are shared, not copied."""
    layers = [k.split(".") for k in state_dict if k.startswith("layer")]
    per_stage = 1 + max((int(parts[1]) for parts in layers), default=-1)
    top = {"conv1": "stem", "bn1": "bn", "linear": "head"}
    inner = {"conv1": "conv_a", "conv2": "conv_b", "bn1": "bn1", "bn2": "bn2"}
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0].startswith("layer"):
            block = (int(parts[0][len("layer"):]) - 1) * per_stage + int(parts[1])
            if parts[2] == "shortcut":  # nn.Sequential(conv) in the original, the conv itself here
                name = f"blocks.{block}.shortcut.{parts[-1]}"
            elif parts[2] in inner:
                name = ".".join([f"blocks.{block}", inner[parts[2]], *parts[3:]])
            else:
                raise UserError(f"unexpected key in an SLN Wide_ResNet state dict: {key}")
        elif parts[0] in top:
            name = ".".join([top[parts[0]], *parts[1:]])
        else:
            raise UserError(f"unexpected key in an SLN Wide_ResNet state dict: {key}")
        out[name] = value
    return out


class _PreActBlock(nn.Module):
    """He et al.'s pre-activation block; `activated_identity` is DivideMix's variant, whose identity shortcut
    carries ReLU(BN(x)) instead of x (its `nn.Sequential()` shortcut is applied to the activation)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, activated_identity: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
                         if stride != 1 or in_ch != out_ch else None)
        self.activated_identity = activated_identity

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        if self.shortcut is not None:
            shortcut = self.shortcut(out)
        else:
            shortcut = out if self.activated_identity else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016) for 32x32 inputs: 18 = [2,2,2,2], 34 = [3,4,6,3] blocks.

    The defaults are He et al.'s layout (plain conv stem, final BN + ReLU). `dividemix=True` builds the network of
    the DivideMix code (PreResNet.py, reused by InstanceGM): conv + BN + ReLU stem, identity shortcuts taken from
    the block's activation, and no final BN/ReLU before the pooling. `width_mult` scales every width (64, 128, 256,
    512) for cheap CPU runs.
    """

    LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

    def __init__(self, num_classes: int = 10, depth: int = 18, in_channels: int = 3, dividemix: bool = False,
                 width_mult: float = 1.0):
        super().__init__()
        check_choice(depth, self.LAYOUTS, "PreAct ResNet depth")
        if not width_mult > 0:
            raise UserError(f"width_mult must be positive, got {width_mult}")
        widths = [max(1, int(round(w * width_mult))) for w in (64, 128, 256, 512)]
        stem = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
        if dividemix:
            stem += [nn.BatchNorm2d(widths[0]), nn.ReLU()]
        self.stem = stem[0] if len(stem) == 1 else nn.Sequential(*stem)
        layers, in_ch = [], widths[0]
        for out_ch, stride, count in zip(widths, (1, 2, 2, 2), self.LAYOUTS[depth]):
            for i in range(count):
                layers.append(_PreActBlock(in_ch, out_ch, stride if i == 0 else 1, activated_identity=dividemix))
                in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.bn = None if dividemix else nn.BatchNorm2d(in_ch)
        self.feature_dim = in_ch
        self.head = nn.Linear(in_ch, num_classes)

    def features(self, x):
        out = self.layers(self.stem(x))
        if self.bn is not None:
            out = torch.relu(self.bn(out))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x):
        return self.head(self.features(x))


def _conv_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


class _ResidualPair(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(ch, ch), _conv_bn(ch, ch))

    def forward(self, x):
        return x + self.body(x)


class ResNet9(nn.Module):
    """The residual network of the CIFAR-10 speed runs (Page's DAWNBench ResNet-9, as in airbench's lineage): a
    prep conv, then three stages conv-BN-ReLU + 2x2 max-pool at widths 2w, 4w, 8w, the first and last followed by
    a residual pair of convs; global max-pool and a linear head whose logits are scaled by 1/8. w = 64 x
    `width_mult`: 6.57M parameters at 1.0, 1.65M at 0.5, 0.41M at 0.25; a 32x32 forward pass costs 95M
    multiply-adds at 0.5 and 24M at 0.25, against 555M for DivideMix's PreAct ResNet-18. At 0.25 it is the cpu
    profile's CIFAR-10 network (docs/bench.md §3)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0):
        super().__init__()
        if not width_mult > 0:
            raise UserError(f"width_mult must be positive, got {width_mult}")
        w = [max(1, int(round(c * width_mult))) for c in (64, 128, 256, 512)]
        self.body = nn.Sequential(
            _conv_bn(in_channels, w[0]),
            _conv_bn(w[0], w[1]), nn.MaxPool2d(2), _ResidualPair(w[1]),
            _conv_bn(w[1], w[2]), nn.MaxPool2d(2),
            _conv_bn(w[2], w[3]), nn.MaxPool2d(2), _ResidualPair(w[3]),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.feature_dim = w[3]
        self.head = nn.Linear(w[3], num_classes, bias=False)
        self.logit_scale = 0.125   # the speed runs' fixed output scale: softer early logits at a high lr

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.logit_scale


class CasCNN(nn.Module):
    """The CAS classifier the TDSM code defines for MNIST (`ClassifierCAS_CNN_MNIST`): a 5x5 conv to 16 channels
    (padding 2) + ReLU + 2x2 max-pool, a 5x5 conv to 32 channels (padding 2) + ReLU + 2x2 max-pool, flatten, and one
    linear layer to the classes. 33,738 parameters for 1x32x32 inputs and 10 classes; the linear layer's input is
    32 (H/4)^2 (the original fixes it at 32x8x8 for 32x32 images)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, img_resolution: int = 32):
        super().__init__()
        if img_resolution % 4:
            raise UserError(f"the CAS CNN needs an image size divisible by 4, got {img_resolution}")
        self.conv1 = nn.Conv2d(in_channels, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.feature_dim = 32 * (img_resolution // 4) ** 2
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CasResNet50(nn.Module):
    """The CAS classifier the TDSM code uses for CIFAR (`ClassifierCAS`): torchvision's ImageNet ResNet-50
    (Bottleneck blocks [3, 4, 6, 3], 7x7 stride-2 stem and max-pool kept) trained from scratch, its first conv
    rebuilt as Conv2d(in_channels, 64, 7, stride 2, padding 3, no bias) for the input's channels. 23,528,522
    parameters for 3 channels and 10 classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, img_resolution: int = 32):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.head, net.fc = net.fc, nn.Identity()   # the body ends in the 2048-d pooled features
        self.body = net
        self.feature_dim = self.head.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def preact_state_from_dividemix(state: dict) -> dict:
    """Map a state dict of the DivideMix code's PreAct ResNet (PreResNet.py `ResNet(PreActBlock, ...)`, reused by
    InstanceGM) onto `PreActResNet(dividemix=True)`: conv1/bn1 -> stem.0/stem.1, layerL.i -> layers.k (blocks
    counted across stages), shortcut.0 -> shortcut, linear -> head. Every tensor is kept; the shapes are unchanged."""
    counts: dict[int, int] = {}
    for key in state:
        if key.startswith("layer"):
            stage, block = key.split(".")[:2]
            counts[int(stage[5:])] = max(counts.get(int(stage[5:]), 0), int(block) + 1)
    offsets, total = {}, 0
    for stage in sorted(counts):
        offsets[stage], total = total, total + counts[stage]
    mapped = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "conv1":
            new = f"stem.0.{rest}"
        elif head == "bn1":
            new = f"stem.1.{rest}"
        elif head == "linear":
            new = f"head.{rest}"
        elif head.startswith("layer"):
            block, _, inner = rest.partition(".")
            inner = inner.replace("shortcut.0.", "shortcut.")
            new = f"layers.{offsets[int(head[5:])] + int(block)}.{inner}"
        else:
            raise UserError(f"unexpected key {key!r} in a DivideMix PreAct ResNet state dict")
        mapped[new] = value
    return mapped


def _preact18(**kw):
    return PreActResNet(depth=18, **kw)


def _preact34(**kw):
    return PreActResNet(depth=34, **kw)


def _preact18_dividemix(**kw):
    return PreActResNet(depth=18, dividemix=True, **kw)


def _wrn28_2(**kw):
    return WideResNet(depth=28, widen=2, **kw)


ARCHITECTURES = {"small_cnn": SmallCNN, "resnet9": ResNet9, "wrn28_2": _wrn28_2, "preact_resnet18": _preact18,
                 "preact_resnet34": _preact34, "preact_resnet18_dividemix": _preact18_dividemix,
                 "cas_cnn_mnist": CasCNN, "cas_resnet50": CasResNet50}
# the architectures whose widths scale with `width_mult` (the reduced CPU profiles' narrower networks)
WIDTH_SCALABLE = frozenset({"preact_resnet18", "preact_resnet34", "preact_resnet18_dividemix", "resnet9"})


def architecture_kwargs(arch: str, num_classes: int, in_channels: int, img_resolution: int) -> dict:
    """The constructor arguments of `arch` for images of this size: the image size only where the network needs
    it (a flattening head)."""
    import inspect

    check_choice(arch, ARCHITECTURES, "architecture")
    kwargs = {"num_classes": num_classes, "in_channels": in_channels}
    if "img_resolution" in inspect.signature(ARCHITECTURES[arch]).parameters:
        kwargs["img_resolution"] = img_resolution
    return kwargs


def build_model(arch: str, **kwargs) -> nn.Module:
    check_choice(arch, ARCHITECTURES, "architecture")
    return ARCHITECTURES[arch](**kwargs)


def save_model(model: nn.Module, path, arch: str, **kwargs) -> Path:
    """Save weights with what is needed to rebuild the network (`load_model`)."""
    from ..io import atomic_write

    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": "nlkit-model-1", "arch": arch, "kwargs": kwargs, "state_dict": state}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


def load_model(path, map_location="cpu") -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model checkpoint not found: {path}")
    from ..safeload import torch_load

    payload = torch_load(path, "a model checkpoint", map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != "nlkit-model-1":
        raise UserError(f"{path} is not an nlkit model checkpoint (saved with nlkit.models.save_model)")
    model = build_model(payload["arch"], **payload["kwargs"])
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.eval()
