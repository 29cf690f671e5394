"""Which photos of a large set to match: image retrieval from the set's own SIFT descriptors.

Exhaustive matching costs T(T-1)/2 pairs, so above a few dozen photos most of the time goes into pairs that
do not overlap. As in Video Google (Sivic & Zisserman 2003) and COLMAP's vocabulary-tree matching, every
image becomes a tf-idf weighted bag of visual words, and each image is matched only with its most similar
images. COLMAP's tree is trained offline and downloaded; here the vocabulary is a flat k-means over a
sample of the set's own descriptors, built in seconds, so nothing has to be fetched and the words fit the
scene. All steps are plain numpy (BLAS matrix products), seeded.
"""
from __future__ import annotations

import logging
import time

import numpy as np
from scipy import sparse

logger = logging.getLogger(__name__)


def as_unit(desc: np.ndarray) -> np.ndarray:
    """(M, 128) uint8 COLMAP SIFT descriptors (L1-root, scaled) -> (M, 128) float32, L2 unit rows."""
    x = np.asarray(desc, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def nearest_word(x: np.ndarray, centres: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """(M,) index of the nearest of (K, D) centres for each of (M, D) rows.

    argmin |x - c|^2 = argmax x.c - |c|^2 / 2, one BLAS product per chunk of rows and no other (M, K)
    temporary (the (M, K) difference with |c|^2 cost 2-4x the product itself at 50000 x 1024).
    """
    half = 0.5 * (centres ** 2).sum(1)
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), chunk):
        score = x[s:s + chunk] @ centres.T
        score -= half
        out[s:s + chunk] = np.argmax(score, axis=1)
    return out


def kmeans(x: np.ndarray, k: int, iterations: int = 10, seed: int = 0) -> np.ndarray:
    """(k, D) centres of (M, D) float32 rows by Lloyd's algorithm from k distinct random rows.

    An emptied cluster keeps its previous centre, so k never shrinks.
    """
    rng = np.random.default_rng(seed)
    k = min(k, len(x))
    centres = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iterations):
        word = nearest_word(x, centres)
        counts = np.bincount(word, minlength=k)
        members = sparse.csr_matrix((np.ones(len(x), x.dtype), (word, np.arange(len(x)))), shape=(k, len(x)))
        sums = np.asarray(members @ x)  # per-word sums of the rows (np.add.at took 10x as long)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


def tfidf_vectors(words: list, k: int) -> np.ndarray:
    """(T, k) L2-normalised tf-idf bags of words from T arrays of word ids.

    Term frequencies are square-rooted (repeated structure, e.g. a tiled floor, would otherwise dominate).
    """
    T = len(words)
    tf = np.stack([np.bincount(w, minlength=k).astype(np.float64) for w in words]) if T else np.zeros((0, k))
    df = (tf > 0).sum(0)
    idf = np.log((T + 1) / (df + 1))  # smoothed: a word in every image weighs ~0
    v = np.sqrt(tf) * idf
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def top_k_pairs(similarity: np.ndarray, k: int) -> set:
    """Pairs (i, j), i < j, where j is among i's k most similar images or i among j's."""
    S = np.array(similarity, dtype=np.float64)
    np.fill_diagonal(S, -np.inf)
    k = min(k, len(S) - 1)
    if k <= 0:
        return set()
    best = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return {(min(i, int(j)), max(i, int(j))) for i in range(len(S)) for j in best[i]}


def retrieval_pairs(descriptors: list, neighbours: int, words: int = 1024, sample: int = 50000,
                    seed: int = 0, more: int = 0) -> tuple:
    """(pairs, info, more_pairs): each image with its `neighbours` nearest images by tf-idf similarity, and the
    pairs that its `more` nearest add to those (empty unless more > neighbours; matched only when needed).

    descriptors: T arrays (M_t, 128) of SIFT descriptors (a subsample per image is enough). The vocabulary
    has min(words, total / 20) words, trained on at most `sample` descriptors. info goes into the report.
    """
    t0 = time.time()
    units = [as_unit(d) if len(d) else np.zeros((0, 128), np.float32) for d in descriptors]
    pool = np.concatenate(units) if units else np.zeros((0, 128), np.float32)
    if len(pool) == 0:
        return set(), {"method": "retrieval", "words": 0, "neighbours": neighbours, "seconds": 0.0}, set()
    rng = np.random.default_rng(seed)
    train = pool[rng.choice(len(pool), min(sample, len(pool)), replace=False)]
    k = int(max(16, min(words, len(pool) // 20)))
    centres = kmeans(train, k, seed=seed)
    bags = tfidf_vectors([nearest_word(u, centres) if len(u) else np.zeros(0, np.int64) for u in units], len(centres))
    similarity = bags @ bags.T
    pairs = top_k_pairs(similarity, neighbours)
    more_pairs = top_k_pairs(similarity, more) - pairs if more > neighbours else set()
    info = {"method": "retrieval", "vocabulary": "k-means on the set's own SIFT descriptors, tf-idf",
            "words": int(len(centres)), "descriptors": int(len(pool)), "neighbours": int(neighbours),
            "seconds": round(time.time() - t0, 2)}
    logger.info("retrieval: %d words from %d descriptors, %d neighbours per image -> %d pairs (%.1fs)",
                len(centres), len(pool), neighbours, len(pairs), info["seconds"])
    return pairs, info, more_pairs
