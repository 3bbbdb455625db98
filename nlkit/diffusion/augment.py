"""A non-leaking geometric augmentation pipe in the manner of EDM's AugmentPipe (p = 0.12 for CIFAR-10).

Each augmentation is drawn per image with probability p times its multiplier: x-flip, y-flip, isotropic scaling,
arbitrary rotation, anisotropic scaling and fractional translation. All of them compose into one affine map applied
with a single `grid_sample` (reflection padding), and the network receives the 9 numbers describing the draw as
augment labels, so it learns to undo them and sampling with zero labels yields un-augmented images:

    [x-flip, y-flip, log2 scale, cos(rot) - 1, sin(rot), log2 aniso * cos, log2 aniso * sin, tx, ty]

It runs on the device without host synchronisation. This is a re-implementation from the description of the
transforms, not a port; its resampling filter is bilinear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUGMENT_DIM = 9


class AugmentPipe:
    def __init__(self, p: float = 0.12, xflip: float = 1e8, yflip: float = 1, scale: float = 1,
                 rotate_frac: float = 1, aniso: float = 1, translate_frac: float = 1, scale_std: float = 0.2,
                 rotate_frac_max: float = 1, aniso_std: float = 0.2, translate_frac_std: float = 0.125):
        self.p = float(p)
        self.xflip, self.yflip, self.scale = xflip, yflip, scale
        self.rotate_frac, self.aniso, self.translate_frac = rotate_frac, aniso, translate_frac
        self.scale_std, self.rotate_frac_max = scale_std, rotate_frac_max
        self.aniso_std, self.translate_frac_std = aniso_std, translate_frac_std

    def _gate(self, n: int, mult: float, generator, device) -> torch.Tensor:
        return (torch.rand(n, generator=generator, device=device) < min(self.p * mult, 1.0)).float()

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """(augmented images, augment labels (B, 9)) for float images (B, C, H, W)."""
        n, device = images.shape[0], images.device

        def rnd(*shape):
            return torch.rand(*shape, generator=generator, device=device)

        def gauss(*shape):
            return torch.randn(*shape, generator=generator, device=device)

        fx = torch.randint(0, 2, (n,), generator=generator, device=device).float() * self._gate(n, self.xflip, generator, device)
        fy = torch.randint(0, 2, (n,), generator=generator, device=device).float() * self._gate(n, self.yflip, generator, device)
        log_s = gauss(n) * self.scale_std * self._gate(n, self.scale, generator, device)
        rot = (rnd(n) * 2 - 1) * math.pi * self.rotate_frac_max * self._gate(n, self.rotate_frac, generator, device)
        log_a = gauss(n) * self.aniso_std * self._gate(n, self.aniso, generator, device)
        a_rot = (rnd(n) * 2 - 1) * math.pi
        a_gate = (log_a != 0).float()
        t = gauss(n, 2) * self.translate_frac_std * self._gate(n, self.translate_frac, generator, device)[:, None]
        labels = torch.stack([fx, fy, log_s, rot.cos() - 1, rot.sin(), log_a * a_rot.cos() * a_gate,
                              log_a * a_rot.sin() * a_gate, t[:, 0], t[:, 1]], 1)

        # the map from output coordinates to input coordinates (grid_sample's convention), in [-1, 1] units
        eye = torch.eye(2, device=device).expand(n, 2, 2)
        flip = torch.diag_embed(torch.stack([1 - 2 * fx, 1 - 2 * fy], 1))
        scale = eye * (2 ** log_s)[:, None, None]
        c, s = rot.cos(), rot.sin()
        rotation = torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1)
        ac, as_ = a_rot.cos(), a_rot.sin()
        a_r = torch.stack([torch.stack([ac, -as_], 1), torch.stack([as_, ac], 1)], 1)
        a_diag = torch.diag_embed(torch.stack([2 ** log_a, 2 ** -log_a], 1))
        aniso = a_r @ a_diag @ a_r.transpose(1, 2)
        forward = rotation @ aniso @ scale @ flip            # how the content moves
        inverse = torch.linalg.inv(forward)
        theta = torch.cat([inverse, -(inverse @ (2 * t)[:, :, None])], 2)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return out, labels
