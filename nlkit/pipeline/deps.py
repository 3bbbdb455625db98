"""Cell dependencies, under the names they have always been imported by: the declared needs (needs.py), the
artefacts' content hashes (artefacts.py) and the run keys they fold into (currency.py). Nothing in the pipeline
imports this module; it imports those one way."""

from .artefacts import TORCH_SUFFIXES, ArtefactUnreadable, content_hash
from .currency import Resolved, resolve_needs, run_key
from .needs import (
    WEIGHTS_FOLDER,
    DependencyMissing,
    dependency_cell,
    first_seed,
    need_entries,
    needs_of,
    published_file,
    weights_roots,
)

__all__ = ["TORCH_SUFFIXES", "WEIGHTS_FOLDER", "ArtefactUnreadable", "DependencyMissing", "Resolved", "content_hash",
           "dependency_cell", "first_seed", "need_entries", "needs_of", "published_file", "resolve_needs", "run_key",
           "weights_roots"]
