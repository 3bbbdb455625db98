"""t-SNE maps and a neighbour check: do a sample's nearest neighbours carry its clean label?"""

from __future__ import annotations

import numpy as np


def tsne_2d(features: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE (scikit-learn), with PCA initialisation for stable, seeded layouts."""
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, max(2.0, (len(features) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                learning_rate="auto").fit_transform(np.asarray(features, dtype=np.float32))


def knn_label_agreement(features: np.ndarray, noisy: np.ndarray, clean: np.ndarray, k: int = 10) -> dict:
    """How often the majority noisy label of a sample's k nearest neighbours (itself excluded) is its clean label,
    overall and for the samples whose own label is wrong."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(features) - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(features)
    neighbours = nn.kneighbors(features, return_distance=False)[:, 1:]
    c = int(max(noisy.max(), clean.max())) + 1
    votes = np.zeros((len(features), c))
    np.add.at(votes, (np.repeat(np.arange(len(features)), k), noisy[neighbours].ravel()), 1)
    majority = votes.argmax(1)
    wrong = noisy != clean
    return {
        "knn_majority_equals_clean": float(np.mean(majority == clean)),
        "knn_majority_equals_clean_on_noisy_samples": float(np.mean(majority[wrong] == clean[wrong]))
        if wrong.any() else float("nan"),
        "noisy_label_equals_clean": float(np.mean(~wrong)),
    }
