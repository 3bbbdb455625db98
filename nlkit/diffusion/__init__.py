"""Score-based diffusion shared by the methods: EDM preconditioning, loss and Heun sampler (`edm`), a non-leaking
augmentation pipe (`augment`), the DDPM++ UNet (`unet`) and noise-level-conditioned classifiers (`classifier`);
`original_layout` maps state dicts of the EDM/TDSM reference code to these modules.
It sits at the models/train layer: nothing here imports the methods, the pipeline or the figures."""

from .augment import AUGMENT_DIM, AugmentPipe
from .classifier import CLASSIFIER_ARCHS, NoiseConditionalClassifier, build_classifier
from .edm import (
    P_MEAN,
    P_STD,
    SIGMA_DATA,
    SIGMA_MAX,
    SIGMA_MIN,
    EDMPrecond,
    edm_loss,
    ema_beta,
    heun_sample,
    heun_schedule,
    learning_rate,
    loss_weight,
    precond_coefficients,
    sample_sigma,
    sanitize_gradients,
)
from .unet import UNET_PRESETS, SongUNet, build_unet, unet_parameter_count

__all__ = ["AUGMENT_DIM", "CLASSIFIER_ARCHS", "P_MEAN", "P_STD", "SIGMA_DATA", "SIGMA_MAX", "SIGMA_MIN",
           "UNET_PRESETS", "AugmentPipe", "EDMPrecond", "NoiseConditionalClassifier", "SongUNet", "build_classifier",
           "build_unet", "edm_loss", "ema_beta", "heun_sample", "heun_schedule", "learning_rate", "loss_weight",
           "precond_coefficients", "sample_sigma", "sanitize_gradients", "unet_parameter_count"]
