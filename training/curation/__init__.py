"""Data curation for the reward signals: multi-agent rejection sampling of preference pairs."""
from training.curation.rejection_sampling import (
    CurationConfig,
    CurationError,
    CurationResult,
    GeneratorAgent,
    curate_pairs,
    read_pair_file,
)
from training.curation.debate import DebatePrinciples, curate_pairs_by_debate
from training.curation.retrieval import Example, RetrievalIndex

__all__ = ["CurationConfig", "CurationError", "CurationResult", "DebatePrinciples", "Example", "GeneratorAgent",
           "RetrievalIndex", "curate_pairs", "curate_pairs_by_debate", "read_pair_file"]
