"""Few-shot examples for the debate agents (training/curation/debate.py): the k most similar well-rated
corpus greetings to a prompt, by character n-gram TF-IDF over the query (mostly) and the text."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from training.judges.registry import query_hash


QUERY_WEIGHT = 0.7  # retrieval similarity: mostly the occasion (query), some of the wording (text)


@dataclass(frozen=True)
class Example:
    id: str  # the corpus greeting's id (provenance)
    query: str
    text: str


class RetrievalIndex:
    """Character 1-3-gram TF-IDF over well-rated (query, greeting) examples; nothing downloaded."""

    def __init__(self, examples: Sequence[Example]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.examples = [e for e in examples if e.query.strip() and e.text.strip()]
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, dtype=np.float32)
        if self.examples:
            self.vectorizer.fit([e.query for e in self.examples] + [e.text for e in self.examples])
            self.query_matrix = self.vectorizer.transform([e.query for e in self.examples])
            self.text_matrix = self.vectorizer.transform([e.text for e in self.examples])
            self.query_hashes = [query_hash(e.query) for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def search(self, query: str, k: int, exclude_queries: Iterable[str] = ()) -> list[dict]:
        """The k most similar examples as {id, query, text, similarity}, best first; never one of
        `query` itself or of an excluded query (the few-shot examples must not hand over an answer)."""
        if k <= 0 or not self.examples:
            return []
        vector = self.vectorizer.transform([query])
        similarity = (QUERY_WEIGHT * (self.query_matrix @ vector.T).toarray().ravel()
                      + (1 - QUERY_WEIGHT) * (self.text_matrix @ vector.T).toarray().ravel())
        banned = {query_hash(query)} | {query_hash(q) for q in exclude_queries}
        found = []
        for i in np.argsort(-similarity, kind="stable"):
            if similarity[i] <= 0 or len(found) == k:
                break
            if self.query_hashes[i] in banned:
                continue
            example = self.examples[i]
            found.append({"id": example.id, "query": example.query, "text": example.text,
                          "similarity": round(float(similarity[i]), 4)})
        return found
