"""Label-noise models, label files and noise statistics (see the noise spec)."""

from .generators import (
    CLASS_CONDITIONAL_KINDS,
    NoiseResult,
    apply_openset,
    asymmetric,
    check_labels,
    idn_ptd,
    make_noise,
    openset,
    pairflip,
    plc_hybrid,
    plc_hybrid_matrix,
    pmd_generate,
    resln_custom,
    sample_from_transition,
    symmetric,
)
from .labelfiles import (
    PUBLISHED_SHA256,
    read_labels,
    read_openset_flags,
    save_labels,
    sha256_file,
    verify_published,
    write_sln_csv,
)
from .maps import (
    ASYM_MAPS,
    CIFAR100_SUPERCLASSES,
    check_invertible,
    successor,
    superclass_groups_from_coarse,
    transition_matrix,
)
from .stats import empirical_transition, noise_report, top_confusions, transition_counts

__all__ = [name for name in dir() if not name.startswith("_")]
