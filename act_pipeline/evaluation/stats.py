"""Intervals and tests for arms compared on the same held-out items, over several training seeds.

Items of one game are correlated, and a trained arm varies with its training seed, so every
interval here resamples both: a two-stage percentile bootstrap that draws seeds with replacement
and games (clusters) with replacement, taking all items of each drawn game. The paired test flips
the sign of each game's difference at random (the null: A and B are exchangeable within a game).

Outcomes are per item, in the same item order for every seed: 1/0, or a share in [0, 1]. An arm
whose outcomes do not depend on the training seed (the base model) is a single "seed".
Pure numpy; every random draw comes from ``numpy.random.default_rng(seed)``, so results are
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

Seed = Hashable  # a training seed (int), or "-" for a seed-independent arm
BySeed = Mapping[Seed, Sequence[float]]
_CHUNK = 1000  # resamples / sign patterns drawn at a time (bounds memory on many games)


def _matrix(by_seed: BySeed, clusters: Sequence[str]) -> np.ndarray:
    """Outcomes as a (seeds, items) array, checked against the clusters' length."""
    if not by_seed:
        raise ValueError("no seeds")
    x = np.asarray([list(v) for v in by_seed.values()], dtype=float)
    if x.ndim != 2 or x.shape[1] != len(clusters):
        lens = sorted({len(v) for v in by_seed.values()})
        raise ValueError(f"every seed needs one outcome per item: {len(clusters)} clusters, outcome lengths {lens}")
    if not len(clusters):
        raise ValueError("no items")
    return x


def _cluster_sums(x: np.ndarray, clusters: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per seed and cluster the sum of outcomes (seeds, G), and each cluster's item count (G,).

    >>> s, n = _cluster_sums(np.array([[1., 0., 1.]]), ["a", "b", "a"]); s.tolist(), n.tolist()
    ([[2.0, 0.0]], [2.0, 1.0])
    """
    _, codes = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
    g = int(codes.max()) + 1
    sums = np.stack([np.bincount(codes, weights=row, minlength=g) for row in x])
    return sums, np.bincount(codes, minlength=g).astype(float)


def _bootstrap(x: np.ndarray, clusters: Sequence[str], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` two-stage bootstrap means: seeds drawn with replacement, games drawn with
    replacement (one game draw per resample, shared by its seeds: every seed saw the same games),
    each drawn seed's item mean over the drawn games' items, averaged over the drawn seeds."""
    sums, counts = _cluster_sums(x, clusters)
    s, g = sums.shape
    out = []
    for start in range(0, resamples, _CHUNK):
        r = min(_CHUNK, resamples - start)
        seeds = rng.integers(0, s, size=(r, s))
        weights = rng.multinomial(g, np.full(g, 1.0 / g), size=r).astype(float)  # times each game is drawn
        per_seed = weights @ sums.T / (weights @ counts)[:, None]  # (r, seeds): each seed's mean
        out.append(np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1))
    return np.concatenate(out)


def _ci(estimates: np.ndarray) -> list[float]:
    lo, hi = np.percentile(estimates, [2.5, 97.5])
    return [float(lo), float(hi)]


def clustered_mean(outcomes_by_seed: BySeed, clusters: Sequence[str], resamples: int = 10000,
                   seed: int = 0) -> dict:
    """The mean over seeds of each seed's item mean, with a 95 % two-stage (seeds × games)
    percentile-bootstrap interval.

    >>> r = clustered_mean({0: [1, 1, 0, 0], 1: [1, 0, 0, 0]}, ["g1", "g1", "g2", "g2"], resamples=200)
    >>> r["mean"], r["n"], r["n_clusters"], r["n_seeds"]
    (0.375, 4, 2, 2)
    >>> clustered_mean({"-": [1, 1, 1]}, ["a", "b", "c"], resamples=50)["ci"]
    [1.0, 1.0]
    """
    x = _matrix(outcomes_by_seed, clusters)
    boot = _bootstrap(x, clusters, resamples, np.random.default_rng(seed))
    return {"mean": float(x.mean(axis=1).mean()), "ci": _ci(boot), "n": int(x.shape[1]),
            "n_clusters": len(set(clusters)), "n_seeds": int(x.shape[0])}


def pair_seeds(a_by_seed: BySeed, b_by_seed: BySeed) -> list[tuple[Seed, Sequence[float], Sequence[float]]]:
    """(seed, A's outcomes, B's outcomes) per seed. A side with a single entry (a seed-independent
    arm, e.g. key ``"-"``) is broadcast to every seed of the other side; otherwise the sides are
    paired by seed and must have the same seeds.

    >>> [(s, list(a), list(b)) for s, a, b in pair_seeds({0: [1], 1: [0]}, {"-": [1]})]
    [(0, [1], [1]), (1, [0], [1])]
    >>> pair_seeds({0: [1], 1: [0]}, {0: [1], 2: [1]})
    Traceback (most recent call last):
    ValueError: the two sides are paired by training seed, but seed(s) [1] are missing from B and [2] from A
    """
    if len(b_by_seed) == 1 and len(a_by_seed) >= 1:
        (b,) = b_by_seed.values()
        if len(a_by_seed) == 1:  # both single: paired as they are, labelled by a real seed
            ((ka, a),), ((kb, _),) = a_by_seed.items(), b_by_seed.items()
            return [(kb if ka == "-" else ka, a, b)]
        return [(k, a, b) for k, a in a_by_seed.items()]
    if len(a_by_seed) == 1:
        (a,) = a_by_seed.values()
        return [(k, a, b) for k, b in b_by_seed.items()]
    missing_b = [k for k in a_by_seed if k not in b_by_seed]
    missing_a = [k for k in b_by_seed if k not in a_by_seed]
    if missing_a or missing_b:
        raise ValueError(f"the two sides are paired by training seed, but seed(s) {sorted(missing_b, key=str)} are "
                         f"missing from B and {sorted(missing_a, key=str)} from A")
    return [(k, a, b_by_seed[k]) for k, a in a_by_seed.items()]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p on the discordant counts: ``b`` items only A got right, ``c``
    only B; under the null each discordant item is A's with probability 1/2.

    >>> mcnemar_exact(0, 10) == 2 * 0.5 ** 10
    True
    >>> mcnemar_exact(0, 0), mcnemar_exact(3, 3)
    (1.0, 1.0)
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _mcnemar(pairs: list[tuple[Seed, Sequence[float], Sequence[float]]]) -> dict:
    values = {float(v) for _, a, b in pairs for v in (*a, *b)}
    if not values <= {0.0, 1.0}:
        return {"skipped": "outcomes are shares of several samples, not one 0/1 per item; McNemar needs 0/1"}
    out = []
    for s, a, b in pairs:
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        out.append({"seed": s, "b": only_a, "c": only_b, "p": mcnemar_exact(only_a, only_b)})
    return {"test": "exact McNemar per seed (two-sided binomial; b: only A right, c: only B right)",
            "per_seed": out}


def sign_flip_p(cluster_diffs: Sequence[float], permutations: int = 10000, seed: int = 0) -> tuple[float, str]:
    """Two-sided p of sum(cluster_diffs) under random sign flips of each cluster's difference:
    exact over all 2^G patterns when 2^G <= ``permutations``, else Monte Carlo with the +1
    correction. Returns (p, how it was computed).

    >>> sign_flip_p([1.0, 1.0, 1.0])
    (0.25, 'cluster sign-flip, exact (all 8 sign patterns)')
    >>> sign_flip_p([0.0, 0.0])[0]
    1.0
    """
    d = np.asarray(cluster_diffs, dtype=float)
    g = len(d)
    observed = abs(d.sum())
    tol = 1e-9 * max(1.0, observed)
    if 2 ** g <= permutations:
        hits = 0
        for start in range(0, 2 ** g, _CHUNK):
            codes = np.arange(start, min(start + _CHUNK, 2 ** g))
            signs = ((codes[:, None] >> np.arange(g)) & 1) * 2.0 - 1.0
            hits += int((np.abs(signs @ d) >= observed - tol).sum())
        return hits / 2 ** g, f"cluster sign-flip, exact (all {2 ** g} sign patterns)"
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, _CHUNK):
        signs = rng.choice([-1.0, 1.0], size=(min(_CHUNK, permutations - start), g))
        hits += int((np.abs(signs @ d) >= observed - tol).sum())
    return (hits + 1) / (permutations + 1), f"cluster sign-flip, Monte Carlo ({permutations} draws, +1 correction)"


def paired_difference(a_by_seed: BySeed, b_by_seed: BySeed, clusters: Sequence[str], resamples: int = 10000,
                      permutations: int = 10000, seed: int = 0) -> dict:
    """A − B on the same items: per item and seed (seeds paired as :func:`pair_seeds` says), its
    mean with a 95 % two-stage (seeds × games) bootstrap interval, a two-sided cluster sign-flip
    p (each game's seed-averaged difference sum flipped at random) and, for 0/1 outcomes, an exact
    McNemar test per seed.

    >>> r = paired_difference({0: [1, 1, 0, 1]}, {"-": [0, 1, 0, 0]}, ["g1", "g1", "g2", "g3"], resamples=200)
    >>> r["mean"], r["n"], r["n_clusters"], r["n_seeds"], r["p"]
    (0.5, 4, 3, 1, 0.5)
    >>> r["mcnemar"]["per_seed"]
    [{'seed': 0, 'b': 2, 'c': 0, 'p': 0.5}]
    """
    pairs = pair_seeds(a_by_seed, b_by_seed)
    a = _matrix({i: p[1] for i, p in enumerate(pairs)}, clusters)
    b = _matrix({i: p[2] for i, p in enumerate(pairs)}, clusters)
    d = a - b
    rng = np.random.default_rng(seed)
    boot = _bootstrap(d, clusters, resamples, rng)
    sums, _ = _cluster_sums(d, clusters)
    p, how = sign_flip_p(sums.mean(axis=0), permutations, seed + 1)
    return {"mean": float(d.mean(axis=1).mean()), "ci": _ci(boot), "n": int(d.shape[1]),
            "n_clusters": len(set(clusters)), "n_seeds": len(pairs), "seeds": [s for s, _, _ in pairs],
            "p": p, "p_method": how, "mcnemar": _mcnemar(pairs)}
