"""Data curation for the reward signals: multi-agent rejection sampling of preference pairs."""
from training.curation.rejection_sampling import (
    CurationConfig,
    CurationError,
    CurationResult,
    GeneratorAgent,
    curate_pairs,
    read_pair_file,
)

__all__ = ["CurationConfig", "CurationError", "CurationResult", "GeneratorAgent", "curate_pairs", "read_pair_file"]
