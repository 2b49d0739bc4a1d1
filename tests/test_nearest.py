"""agents/nearest.py: the exact nearest-neighbour searches behind PRDC's dataset constraint."""

import numpy as np
import pytest
import torch

from agents.nearest import AdaptiveSearch, BlockSearch, KDTree, leaf_order, make_search


def exact_nearest(keys, queries):
    """float64 brute force: the lowest index among the nearest keys."""
    d2 = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(-1)
    return d2.argmin(1)


@pytest.mark.parametrize(
    "n, dim, block", [(3000, 5, 64), (2500, 23, 300), (700, 3, 1000), (1, 4, 8)]
)
def test_block_search_finds_the_k_d_trees_nearest_key_near_and_far_from_the_data(n, dim, block):
    rng = np.random.default_rng(n)
    keys = rng.standard_normal((n, dim)) * rng.uniform(0.1, 3.0, dim) + rng.normal(0, 5, dim)
    search, tree = BlockSearch(keys, block), KDTree(keys)
    for scale in (0.01, 0.5, 4.0):  # on the data, near it, far from it
        queries = keys[rng.integers(0, n, 200)] + scale * rng.standard_normal((200, dim))
        expected = exact_nearest(keys, queries)
        np.testing.assert_array_equal(search(queries), expected)
        np.testing.assert_array_equal(tree(queries), expected)


def test_block_search_separates_keys_its_matrix_products_cannot():
    # Unit-scale keys plus 40 keys within 1e-9 of one point: their squared distances to a
    # query among them differ by about 1e-18, below what ||k||^2 - 2 q.k resolves in float64
    # (about 1e-15 here). Only the exact comparison of every candidate the error bound keeps
    # finds the nearest, whatever torch's float32 matmul setting (the pass is float64).
    rng = np.random.default_rng(0)
    point = rng.standard_normal(3)
    cluster = point + 1e-9 * rng.standard_normal((40, 3))
    keys = np.concatenate([rng.standard_normal((500, 3)), cluster])
    queries = point + 3e-10 * rng.standard_normal((20, 3))
    expected = exact_nearest(keys, queries)
    assert len(set(expected)) > 5  # the cluster's keys, not one of them for all
    previous = torch.get_float32_matmul_precision()
    try:
        for precision in ("highest", "medium"):
            torch.set_float32_matmul_precision(precision)
            for block in (1, 7, 64):
                np.testing.assert_array_equal(BlockSearch(keys, block)(queries), expected)
    finally:
        torch.set_float32_matmul_precision(previous)


@pytest.mark.parametrize("scale, offset", [(1e-22, 0.0), (1e19, 0.0), (1.0, 1e6), (1e-3, -5e4)])
def test_block_search_is_exact_at_any_scale_and_distance_from_the_origin(scale, offset):
    # the review's counterexamples: products below float32's normal range (1e-22) and norms
    # whose squares overflow it (1e19) gave wrong rows; keys far from the origin made every
    # pair a candidate. The search's frame (centred, scaled by a power of two) removes both.
    rng = np.random.default_rng(5)
    keys = offset + scale * rng.standard_normal((300, 2))
    queries = offset + scale * rng.standard_normal((50, 2))
    search = BlockSearch(keys, 16)
    np.testing.assert_array_equal(search(queries), exact_nearest(keys, queries))
    assert 0.5 < search.max_norm <= 1.0


def test_block_search_refuses_non_finite_input_and_answers_an_empty_batch():
    keys = np.arange(12.0).reshape(6, 2)
    for bad in (np.nan, np.inf):
        broken = keys.copy()
        broken[2, 1] = bad
        with pytest.raises(ValueError, match="finite"):
            BlockSearch(broken, 2)
        with pytest.raises(ValueError, match="finite"):
            BlockSearch(keys, 2)(np.array([[0.0, bad]]))
    assert BlockSearch(keys, 2)(np.empty((0, 2))).shape == (0,)
    with pytest.raises(ValueError, match="queries must be B x 2"):
        BlockSearch(keys, 2)(np.zeros((3, 3)))


def test_block_search_breaks_ties_towards_the_lowest_index():
    keys = np.array([[1.0, 1.0], [0.0, 0.0], [3.0, 3.0], [0.0, 0.0], [-1.0, -1.0]])
    queries = np.array([[0.1, 0.1], [0.0, 0.0], [-0.1, 0.1]])
    for block in (1, 2, 5):
        assert list(BlockSearch(keys, block)(queries)) == [1, 1, 1]


def test_leaf_order_puts_each_blocks_keys_together():
    rng = np.random.default_rng(1)
    line = rng.standard_normal((1000, 1))
    order = leaf_order(line, 64)
    assert sorted(order) == list(range(1000))  # a permutation
    values = line[order, 0]
    blocks = [values[start : start + 64] for start in range(0, 1000, 64)]
    # on a line every cut is on the one coordinate, so the blocks are consecutive intervals
    for left, right in zip(blocks, blocks[1:]):
        assert left.max() <= right.min()


class FakeSearch:
    """A search that answers `label` and advances a fake clock by `cost` seconds."""

    def __init__(self, label, cost, clock):
        self.label, self.cost, self.clock, self.calls = label, cost, clock, 0

    def __call__(self, queries):
        self.calls += 1
        self.clock[0] += self.cost[0]
        return np.full(len(queries), self.label)


def test_adaptive_search_uses_the_faster_and_re_times_the_other_with_a_growing_wait():
    now = [0.0]
    tree_cost, blocks_cost = [2.0], [0.5]
    tree = FakeSearch(0, tree_cost, now)
    blocks = FakeSearch(1, blocks_cost, now)
    search = AdaptiveSearch(tree, blocks, probe=2, max_probe=8, clock=lambda: now[0])
    queries = np.zeros((3, 2))
    answers = [int(search(queries)[0]) for _ in range(2)]
    assert answers == [1, 0]  # the first two batches time one search each
    # blocks (0.5 s) beat the tree (2 s); the tree lost its first timing, so the wait is
    # already doubled to 4 batches; the tree is re-timed, loses again: 8 (the cap), and 8
    answers = [int(search(queries)[0]) for _ in range(4 + 1 + 8 + 1 + 8 + 1)]
    assert answers == [1] * 4 + [0] + [1] * 8 + [0] + [1] * 8 + [0]
    # the actor nears the data: the tree becomes the faster one and takes over at its next
    # timing; the blocks are then re-timed after the reset wait of 2 batches
    tree_cost[0] = 0.1
    answers = [int(search(queries)[0]) for _ in range(8 + 1 + 2 + 1)]
    assert answers == [1] * 8 + [0] + [0] * 2 + [1]
    assert search.current == 0


def test_every_search_kind_gives_the_same_answers_and_a_bad_kind_is_refused():
    rng = np.random.default_rng(2)
    keys = rng.standard_normal((2000, 6))
    queries = rng.standard_normal((100, 6)) * 2
    expected = exact_nearest(keys, queries)
    for kind in ("kdtree", "blocks", "auto"):
        search = make_search(keys, kind, block=128)
        for _ in range(3):  # auto: both searches, then its choice
            np.testing.assert_array_equal(search(queries), expected)
    with pytest.raises(ValueError, match="search must be one of auto, kdtree, blocks; got 'fast'"):
        make_search(keys, "fast")
