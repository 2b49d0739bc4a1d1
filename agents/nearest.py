"""Exact nearest-neighbour search over a fixed set of keys (PRDC's dataset constraint).

PRDC (agents/prdc.py) asks every actor step for the dataset key nearest to each row of a
batch. Two exact searches answer it; which one is faster depends on how far the queries are
from the keys (docs/offline.md, "The block search"):

- `KDTree`: scipy's cKDTree. About 1 ms for a batch of 256 queries that sit on the data, but
  over a second on 23-dimensional keys when the queries are far from them (an untrained actor).
- `BlockSearch`: the keys in blocks of nearby keys (the leaves of a balanced k-d tree with
  2,048 keys each), searched with matrix products instead of a walk down a tree. The keys of
  the block whose bounding box is nearest give each query an upper bound on its answer; only
  blocks whose box is within it are searched. A matrix product gives each remaining (block,
  query) pair the block's smallest squared distance up to a bounded rounding error (below);
  the blocks that bound leaves in the running are re-checked key by key, and the keys that
  can still win are compared with the k-d tree's own formula, sum((q - k)^2) in float64 on
  the original keys. Far queries cost it a few times less than the tree.
- `AdaptiveSearch`: both, each batch sent to the one that was faster last time, the other
  re-timed now and then.

Both return the nearest key's row. They can differ only where distinct keys lie at exactly
the same float64 distance from a query: the tree's choice is then unspecified, the block
search takes the lowest row. On PRDC's continuous keys that does not happen (a duplicate key
is the same state and action, so the same answer either way), and the tests check the
searches against each other and against a float64 brute force.

The error bound. The block search works in its own frame: keys and queries minus the keys'
mean, times a power of two that brings the largest key norm into (1/2, 1]; distances keep
their order there. Its matrix products run in float64 whatever torch's float32 settings
(TF32, bf16) say. With u = 2^-53, the computed ||k||^2 - 2 q.k is within
E = (D + 4) u (||k|| + ||q||)^2 + (2D + 8) 2^-1074 of its exact value for D-dimensional keys
(the standard dot-product bound D u ||q|| ||k||, the rounding of the frame's change and of the
sum, and an absolute term for products below the normal range). The true nearest key's
computed value is then at most 2E above any key's computed value (the best one included); the
search keeps every candidate within 4E of the value it compares with (a safety factor of 2),
so the true nearest key is never dropped. Non-finite keys or queries are refused with a
ValueError, as scipy's tree refuses them.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.spatial import cKDTree


class Search:
    """An exact search over fixed keys: called with queries (B x D), it returns each query's
    nearest key's row."""

    name = ""

    @property
    def last(self) -> Search:
        """The search that answered the last call (AdaptiveSearch: one of its two)."""
        return self


class KDTree(Search):
    """scipy's cKDTree with sliding-midpoint splits: the exact search PRDC has always used.
    On a 1M-transition Hopper dataset it answered 1.7x faster than median splits."""

    name = "kdtree"

    def __init__(self, keys: np.ndarray):
        self.tree = cKDTree(np.asarray(keys, dtype=np.float64), balanced_tree=False)

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        return self.tree.query(queries, k=1)[1]


class BlockSearch(Search):
    """Exact nearest keys by blocks of nearby keys (module doc). Keys N x D, queries B x D."""

    name = "blocks"

    def __init__(self, keys: np.ndarray, block: int = 2048):
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        keys = np.asarray(keys, dtype=np.float64)
        if keys.ndim != 2 or len(keys) == 0 or not np.isfinite(keys).all():
            raise ValueError("keys must be a non-empty N x D array of finite numbers")
        self.order = leaf_order(keys, block)  # block b holds original rows order[starts[b]:...]
        self.keys = np.ascontiguousarray(keys[self.order])  # for the exact comparison
        self.starts = np.arange(0, len(keys), block)
        self.block = block
        # The search's frame: keys centred and scaled by a power of two to norms <= 1
        # (module doc), so its matrix products stay far from under- and overflow.
        self.center = self.keys.mean(0)
        moved = self.keys - self.center
        squares = (moved**2).sum(1)
        spread = float(np.sqrt(squares.max()))
        self.scale = 2.0 ** -np.ceil(np.log2(spread)) if spread > 0 else 1.0
        moved *= self.scale  # a power of two: exact, and so are the rescaled squares below
        self.moved_t = torch.from_numpy(np.ascontiguousarray(moved.T))  # D x N
        self.norms = torch.from_numpy(squares * self.scale**2)
        self.max_norm = spread * self.scale  # in (0.5, 1], or 0
        blocks = [moved[start : start + block] for start in self.starts]
        self.low = torch.from_numpy(np.stack([part.min(0) for part in blocks]))  # blocks x D
        self.high = torch.from_numpy(np.stack([part.max(0) for part in blocks]))

    def _slack(self, squares: np.ndarray) -> np.ndarray:
        """Per query (its squared norm in the search's frame), how far above a computed value
        a candidate is kept: 4E (module doc), twice the most the true nearest key's computed
        value can lie above it."""
        reach = self.max_norm + np.sqrt(squares)
        dim = self.keys.shape[1]
        return 4.0 * ((dim + 4) * 2.0**-53 * reach**2 + (2 * dim + 8) * 2.0**-1074)

    def _partial(self, b: int, moved: torch.Tensor) -> torch.Tensor:
        """||k||^2 - 2 q.k in the search's frame for the keys of block b (queries x keys)."""
        rows = slice(self.starts[b], self.starts[b] + self.block)
        return torch.addmm(self.norms[None, rows], moved, self.moved_t[:, rows], alpha=-2.0)

    def _box_distances(self, moved: torch.Tensor) -> np.ndarray:
        """Squared distance from each query to each block's bounding box (B x blocks), a
        lower bound on its distance to every key of the block; one coordinate at a time (no
        B x blocks x D array)."""
        total = torch.zeros(len(moved), len(self.low), dtype=torch.float64)
        for d in range(moved.shape[1]):
            q = moved[:, d, None]
            below = (self.low[None, :, d] - q).clamp_min(0)
            above = (q - self.high[None, :, d]).clamp_min(0)
            total += below * below + above * above
        return total.numpy()

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries, dtype=np.float64)
        if queries.ndim != 2 or queries.shape[1] != self.keys.shape[1]:
            raise ValueError(f"queries must be B x {self.keys.shape[1]}, got {queries.shape}")
        if not np.isfinite(queries).all():
            raise ValueError("queries must be finite numbers")
        if len(queries) == 0:
            return np.empty(0, np.int64)
        moved = (queries - self.center) * self.scale
        if np.abs(moved).max() > 2.0**300:
            raise ValueError("a query lies too far from the keys for the block search")
        moved_t, squares = torch.from_numpy(moved), (moved**2).sum(1)
        slack = self._slack(squares)
        box = self._box_distances(moved_t)
        # 1. An upper bound for each query: the best computed value (||k||^2 - 2 q.k) in the
        #    block whose box is nearest, plus the slack. No block whose box lies farther can
        #    hold the nearest key.
        bound = np.empty(len(queries))
        first = box.argmin(1)
        for b in np.unique(first):
            which = np.flatnonzero(first == b)
            bound[which] = self._partial(b, moved_t[which]).amin(1).numpy()
        bound += slack
        searched = box <= (bound + squares)[:, None] * (1 + 1e-9)  # B x blocks
        # 2. The best computed value in every block left, then the blocks within the slack of
        #    the best of all; 3. their keys within it, compared exactly.
        lowest = np.full(searched.T.shape, np.inf)  # blocks x B
        for b in np.flatnonzero(searched.any(0)):
            which = np.flatnonzero(searched[:, b])
            lowest[b, which] = self._partial(b, moved_t[which]).amin(1).numpy()
        ceiling = lowest.min(0) + slack
        key_rows, query_rows = [], []
        for b in np.flatnonzero((lowest <= ceiling).any(1)):
            which = np.flatnonzero(lowest[b] <= ceiling)
            q, k = np.nonzero(self._partial(b, moved_t[which]).numpy() <= ceiling[which, None])
            key_rows.append(k + self.starts[b])
            query_rows.append(which[q])
        key_rows, query_rows = np.concatenate(key_rows), np.concatenate(query_rows)
        exact = ((self.keys[key_rows] - queries[query_rows]) ** 2).sum(1)  # the tree's formula
        original = self.order[key_rows]
        order = np.lexsort((original, exact, query_rows))  # by query, distance, then index
        first_of_query = np.ones(len(order), bool)
        first_of_query[1:] = query_rows[order][1:] != query_rows[order][:-1]
        found = np.full(len(queries), -1, np.int64)
        found[query_rows[order][first_of_query]] = original[order][first_of_query]
        if (found < 0).any():  # the error bound rules this out; never answer silently wrong
            raise RuntimeError("block search: a query kept no candidate (a bound was violated)")
        return found


def leaf_order(keys: np.ndarray, leaf: int) -> np.ndarray:
    """A permutation of the rows that puts nearby keys together: halve the rows at the median
    of their widest coordinate until at most `leaf` remain (a balanced k-d tree's leaves, in
    order). Every cut falls on a multiple of `leaf`, so rows [b * leaf, (b + 1) * leaf) of
    the result are exactly one leaf."""
    order = np.arange(len(keys))
    pending = [(0, len(keys))]
    while pending:
        start, stop = pending.pop()
        if stop - start <= leaf:
            continue
        rows = order[start:stop]
        part = keys[rows]
        widest = np.argmax(part.max(0) - part.min(0))
        half = -(-(stop - start) // 2 // leaf) * leaf if stop - start > 2 * leaf else leaf
        cut = np.argpartition(part[:, widest], half - 1)
        order[start:stop] = rows[cut]
        pending += [(start, start + half), (start + half, stop)]
    return order


class AdaptiveSearch:
    """Two exact searches of the same keys; each batch goes to the one that was faster when
    last timed. The other is re-timed after `probe` batches: each time it loses again the
    wait doubles (up to `max_probe`); when it wins it takes over and the wait resets. The
    first two batches time one search each."""

    name = "auto"

    def __init__(self, first, second, probe: int = 8, max_probe: int = 1024, clock=None):
        self.searches = (first, second)
        self.seconds = [float("inf"), float("inf")]
        self.current, self.waited = 0, 0
        self.probe, self.min_probe, self.max_probe = probe, probe, max_probe
        self.clock = clock or time.perf_counter
        self.last = first  # the search that answered the last call

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        other = 1 - self.current
        trial = self.seconds[other] == float("inf") or self.waited >= self.probe
        which = other if trial else self.current
        start = self.clock()
        found = self.searches[which](queries)
        self.seconds[which] = self.clock() - start
        self.last = self.searches[which]
        if not trial:
            self.waited += 1
        elif self.seconds[other] < self.seconds[self.current]:
            self.current, self.waited, self.probe = other, 0, self.min_probe
        else:
            self.waited, self.probe = 0, min(2 * self.probe, self.max_probe)
        return found


SEARCHES = ("auto", "kdtree", "blocks")


def make_search(keys: np.ndarray, kind: str = "auto", block: int = 2048):
    """`kind`: one of SEARCHES (module doc)."""
    if kind == "kdtree":
        return KDTree(keys)
    if kind == "blocks":
        return BlockSearch(keys, block)
    if kind == "auto":
        return AdaptiveSearch(KDTree(keys), BlockSearch(keys, block))
    raise ValueError(f"search must be one of {', '.join(SEARCHES)}; got {kind!r}")
