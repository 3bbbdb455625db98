"""Label retrieval for LRA-Diffusion: exact k-nearest neighbours in a frozen feature space, and the training
label drawn from the neighbours' noisy labels with its count weight (docs/lra-diffusion.md §2.3).

Neighbours come from FAISS (a GPU index when the installed faiss has GPU support, else a CPU flat index) or from
a torch fallback (chunked matmul + top-k); both are exact Euclidean search and return the same neighbours.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import UserError, check_choice

INCLUDE_SELF = ("code", "append_only", "exclude")


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def knn_faiss(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 neighbours with FAISS: (squared distances, indices), each (Q, k), nearest first."""
    import faiss

    db = np.ascontiguousarray(database, dtype=np.float32)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    index = faiss.IndexFlatL2(db.shape[1])
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(db)
    dist, idx = index.search(q, k)
    return dist, idx.astype(np.int64)


def knn_torch(database, queries, k: int, chunk: int = 4096, device=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 neighbours in torch (fp32 on `device`), chunked over the queries so memory stays bounded.
    Ties are broken by the lower index, as FAISS's flat index does."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    db = torch.as_tensor(np.asarray(database, dtype=np.float32), device=device)
    db_sq = (db * db).sum(1)
    dists, idxs = [], []
    for start in range(0, len(queries), chunk):
        q = torch.as_tensor(np.asarray(queries[start:start + chunk], dtype=np.float32), device=device)
        d = (q * q).sum(1, keepdim=True) - 2 * q @ db.T + db_sq[None, :]
        d = d.clamp_min_(0)
        # stable top-k: sort by (distance, index)
        order = torch.argsort(d, dim=1, stable=True)[:, :k]
        dists.append(torch.gather(d, 1, order).cpu())
        idxs.append(order.cpu())
    return torch.cat(dists).numpy(), torch.cat(idxs).numpy().astype(np.int64)


def knn(database: np.ndarray, queries: np.ndarray, k: int, backend: str = "auto"):
    """Exact k nearest neighbours by Euclidean distance: FAISS when installed (backend 'auto' or 'faiss'),
    else torch."""
    check_choice(backend, ("auto", "faiss", "torch"), "kNN backend")
    if k < 1 or k > len(database):
        raise UserError(f"k must lie in [1, {len(database)}], got {k}")
    if backend == "faiss" or (backend == "auto" and faiss_available()):
        return knn_faiss(database, queries, k)
    return knn_torch(database, queries, k)


def neighbour_table(features: np.ndarray, k: int, include_self: str = "code", backend: str = "auto") -> np.ndarray:
    """Indices of each training sample's k neighbours among the training set (N x k).

    include_self="code" (LRA's code): the database contains the query, so the sample itself is normally
    neighbour 1; "append_only" and "exclude" search without the sample itself."""
    check_choice(include_self, INCLUDE_SELF, "include_self")
    if include_self == "code":
        return knn(features, features, k, backend)[1]
    _, idx = knn(features, features, k + 1, backend)
    # drop the sample itself wherever ties put it (a duplicate image may come first), keep the k nearest others
    is_self = idx == np.arange(len(idx))[:, None]
    no_self = ~is_self.any(1)
    is_self[no_self, -1] = True  # the sample was not among its k+1 nearest: drop the farthest instead
    return idx[~is_self].reshape(len(idx), k)


def candidate_labels(neighbours: np.ndarray, noisy: np.ndarray, include_self: str = "code") -> np.ndarray:
    """Candidate labels per sample (N x M): the neighbours' noisy labels, plus the sample's own label appended
    unless include_self='exclude'. With 'code' the own label is usually present twice (2 of k+1)."""
    check_choice(include_self, INCLUDE_SELF, "include_self")
    cands = noisy[neighbours]
    if include_self == "exclude":
        return cands
    return np.concatenate([cands, noisy[:, None]], axis=1)


class LabelSampler:
    """Draws each visited sample's training label from its candidates (uniformly, afresh at every visit) and the
    sample weight w_i = n_i / sum_batch n_j, n_i = how many candidates equal the drawn label (docs/lra-diffusion.md §2.3).

    `dynamic=True` is the student's "dynamic kNN weighting": a neighbour is drawn with probability proportional to
    exp(-d / mean d) over the k neighbours (d the plain Euclidean distance, as torch.cdist gives), and the own label
    takes half the mass; the count weights stay. `distances` (N x k, plain) are those of the cached neighbour table;
    per-batch retrieval passes its own to `draw` through `neighbour_probs`."""

    def __init__(self, candidates, device=None, distances=None, dynamic: bool = False,
                 weight_norm: str = "batch", seed: int = 0):
        check_choice(weight_norm, ("batch", "sample"), "weight normalisation")
        self.device = torch.device(device or "cpu")
        self.candidates = torch.as_tensor(np.asarray(candidates), device=self.device, dtype=torch.long)
        self.weight_norm = weight_norm
        self.dynamic = dynamic
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.probs = None
        if dynamic:
            if distances is None:
                raise UserError("dynamic kNN weighting needs the neighbour distances")
            self.probs = neighbour_probs(torch.as_tensor(np.asarray(distances, dtype=np.float32), device=self.device))

    def sample(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, weights) for the samples `idx` of one batch, on the device, without host syncs."""
        probs = None if self.probs is None else self.probs.index_select(0, idx)
        return self.draw(self.candidates.index_select(0, idx), probs)

    def draw(self, cands: torch.Tensor, probs: torch.Tensor | None = None,
             pick: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One label per row of candidates (uniformly, or by `probs`; `pick` gives the drawn columns instead)
        and its count weight."""
        if pick is not None:
            pick = pick.to(self.device)
        elif probs is None:
            pick = torch.randint(0, cands.shape[1], (len(cands),), generator=self.generator, device=self.device)
        else:
            pick = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
        labels = cands.gather(1, pick[:, None]).squeeze(1)
        counts = (cands == labels[:, None]).sum(1).float()
        weights = counts / counts.sum() if self.weight_norm == "batch" else counts / cands.shape[1] / len(cands)
        return labels, weights


def neighbour_probs(distances: torch.Tensor) -> torch.Tensor:
    """Dynamic kNN weighting's draw probabilities over the k neighbours and the own label (last): the neighbours
    share half the mass in proportion to exp(-d / mean d) of their plain distances, the own label the other half."""
    d = distances.float()
    w = torch.exp(-d / d.mean(1, keepdim=True).clamp_min(1e-12))
    w = w / w.sum(1, keepdim=True)
    return torch.cat([0.5 * w, torch.full((len(w), 1), 0.5, device=w.device)], 1)


def knn_majority_vote(neighbours: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The most frequent label among each query's neighbours (ties: the lowest class): a reference baseline."""
    votes = np.zeros((len(neighbours), num_classes), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(len(neighbours)), neighbours.shape[1]), labels[neighbours].ravel()), 1)
    return votes.argmax(1)


def retrieval_purity(candidates: np.ndarray, clean: np.ndarray) -> float:
    """How often a uniformly drawn candidate label is the clean label (expected over the draw)."""
    return float((candidates == clean[:, None]).mean())
