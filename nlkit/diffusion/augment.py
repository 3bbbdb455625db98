"""A non-leaking geometric augmentation pipe in the manner of EDM's AugmentPipe (p = 0.12 for CIFAR-10).

Each augmentation is drawn per image with probability p times its multiplier: x-flip, y-flip, isotropic scaling,
arbitrary rotation, anisotropic scaling and fractional translation. All of them compose into one affine map applied
with a single `grid_sample` (reflection padding), and the network receives the 9 numbers describing the draw as
augment labels, so it learns to undo them and sampling with zero labels yields un-augmented images:

    [x-flip, y-flip, w_scale, cos(rot) - 1, sin(rot), w_aniso * cos(r), w_aniso * sin(r), w_tx, w_ty]

where the w are the raw N(0, 1) draws (the magnitudes are w x 0.2 in log2 units, and w x 0.125 of the image size
for translation), as in EDM.

It runs on the device without host synchronisation. This is a re-implementation from the description of the
transforms, not a port; its resampling filter is bilinear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUGMENT_DIM = 9


class AugmentPipe:
    """EDM's geometric augmentations with EDM's draws (training/augment.py at NVlabs/edm 008a4e5): the same random
    numbers in the same order, the same probabilities (p x multiplier, and a rotated anisotropy frame with
    probability `aniso_rotate_prob`), and the same labels, which are the raw draws (N(0, 1) for scale, anisotropy and
    translation; the angle's cos - 1 and sin for rotation), not the scaled magnitudes. With `generator=None` the
    global torch RNG is used, as EDM does. The transforms compose as EDM's G = T A R S after the flips: scale,
    rotation by -angle, anisotropy in the frame rotated by -r, translation, in pixel coordinates with y down."""

    def __init__(self, p: float = 0.12, xflip: float = 1e8, yflip: float = 1, scale: float = 1,
                 rotate_frac: float = 1, aniso: float = 1, translate_frac: float = 1, scale_std: float = 0.2,
                 rotate_frac_max: float = 1, aniso_std: float = 0.2, aniso_rotate_prob: float = 0.5,
                 translate_frac_std: float = 0.125):
        self.p = float(p)
        self.xflip, self.yflip, self.scale = xflip, yflip, scale
        self.rotate_frac, self.aniso, self.translate_frac = rotate_frac, aniso, translate_frac
        self.scale_std, self.rotate_frac_max = scale_std, rotate_frac_max
        self.aniso_std, self.aniso_rotate_prob, self.translate_frac_std = aniso_std, aniso_rotate_prob, translate_frac_std

    def draw(self, n: int, device, generator: torch.Generator | None = None) -> dict:
        """The random parameters of n augmentations, drawn in EDM's order; an augmentation whose multiplier is 0
        draws nothing and keeps its labels at 0."""
        zeros = torch.zeros(n, device=device)

        def rand(*shape):
            return torch.rand(*shape, generator=generator, device=device)

        def randn(*shape):
            return torch.randn(*shape, generator=generator, device=device)

        def flip(mult):
            if mult <= 0:
                return zeros
            w = torch.randint(2, (n,), generator=generator, device=device).float()
            return torch.where(rand(n) < mult * self.p, w, zeros)

        fx, fy = flip(self.xflip), flip(self.yflip)
        w_scale = rot = w_aniso = r_aniso = zeros
        w_trans = torch.zeros(2, n, device=device)
        if self.scale > 0:
            w_scale = randn(n)
            w_scale = torch.where(rand(n) < self.scale * self.p, w_scale, zeros)
        if self.rotate_frac > 0:
            rot = (rand(n) * 2 - 1) * (math.pi * self.rotate_frac_max)
            rot = torch.where(rand(n) < self.rotate_frac * self.p, rot, zeros)
        if self.aniso > 0:
            w_aniso = randn(n)
            r_aniso = (rand(n) * 2 - 1) * math.pi
            w_aniso = torch.where(rand(n) < self.aniso * self.p, w_aniso, zeros)
            r_aniso = torch.where(rand(n) < self.aniso_rotate_prob, r_aniso, zeros)  # frame rotated half the time
        if self.translate_frac > 0:
            w_trans = randn(2, n)
            w_trans = torch.where(rand(1, n) < self.translate_frac * self.p, w_trans, torch.zeros_like(w_trans))
        return {"xflip": fx, "yflip": fy, "scale": w_scale, "rotate": rot, "aniso": w_aniso,
                "aniso_angle": r_aniso, "translate": w_trans}

    def labels(self, d: dict) -> torch.Tensor:
        """The 9 augment labels of EDM: the raw draws."""
        rot, w, r = d["rotate"], d["aniso"], d["aniso_angle"]
        return torch.stack([d["xflip"], d["yflip"], d["scale"], rot.cos() - 1, rot.sin(), w * r.cos(), w * r.sin(),
                            d["translate"][0], d["translate"][1]], 1)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """(augmented images, augment labels (B, 9)) for float images (B, C, H, W)."""
        n, device = images.shape[0], images.device
        d = self.draw(n, device, generator)
        labels = self.labels(d)

        def rotation(angle):
            c, s = angle.cos(), angle.sin()
            return torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1)

        # the forward map of the content, in [-1, 1] units with y down (affine_grid's), as EDM's G = T A R S
        flip = torch.diag_embed(torch.stack([1 - 2 * d["xflip"], 1 - 2 * d["yflip"]], 1))
        scale = torch.eye(2, device=device).expand(n, 2, 2) * (2 ** (d["scale"] * self.scale_std))[:, None, None]
        log_a = d["aniso"] * self.aniso_std
        a_diag = torch.diag_embed(torch.stack([2 ** log_a, 2 ** -log_a], 1))
        aniso = rotation(-d["aniso_angle"]) @ a_diag @ rotation(d["aniso_angle"])
        forward = aniso @ rotation(-d["rotate"]) @ scale @ flip
        shift = (d["translate"] * self.translate_frac_std * 2).T   # a fraction of the size; the size is 2 units
        inverse = torch.linalg.inv(forward)
        theta = torch.cat([inverse, -(inverse @ shift[:, :, None])], 2)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return out, labels
