"""Exact nearest-neighbour searches for PRDC's keys [beta * s, a], timed on one dataset.

    python bench/prdc_search.py --dataset halfcheetah-medium-v5 --batch 256

PRDC (agents/prdc.py) asks, every actor step, for the dataset key nearest to
(beta * s, pi(s)) with s a dataset state. How long that takes depends on how far pi(s) is
from the data, so each search is timed on queries at dataset states whose action part is:
the stored action (`own`), the stored action plus Gaussian noise (std 0.2 and 0.5, clipped to
the bounds), all zeros (an untrained tanh actor) and uniform in the bounds. Searches, all
exact (the script checks each one's distances against PRDC's tree):

- `kdtree`: scipy cKDTree over the keys, sliding-midpoint splits (what PRDC uses);
- `kdtree-pca`: the same over the keys rotated onto their principal axes (an isometry, so
  distances are unchanged; it helps when the data lie near a low-dimensional subspace);
- `state-ball`: the nearest state's key bounds the answer's distance D; only states with
  beta * ||s' - s|| <= D can beat it, found with a k-d tree over the states alone
  (`query_ball_point`), then compared exactly;
- `kdtree-leafN` (`--leafsizes N ...`): PRDC's tree with N keys per leaf instead of scipy's 16;
- `blocks` (`--blocks N ...` for the block sizes, default 2048): agents/nearest.py's exact
  block search (blocks of nearby keys pruned by their bounding boxes, a float32 matrix
  product per block with a bounded error, float64 re-scoring of the keys the bound cannot
  rule out), which PRDC's `search: auto` switches to when the tree is slower.

With `--run RUN` a sixth row times the queries of a trained actor at the same states: the
run's final (else latest) checkpoint, which must have trained on `--dataset`.

States are normalized with the dataset's mean and std, as PRDC does. One torch thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from agents.nearest import BlockSearch  # noqa: E402
from agents.nets import DatasetNorm  # noqa: E402
from core.errors import UserError  # noqa: E402
from datagen import load_dataset  # noqa: E402  (makes a missing ogzoo dataset)
from training.offline import fingerprint  # noqa: E402


def state_ball(states: cKDTree, keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Distances to the nearest key, searching only the states that can beat the nearest
    state's key (module doc)."""
    n_state = states.m
    _, first = states.query(queries[:, :n_state], k=1)
    bound = np.sqrt(((keys[first] - queries) ** 2).sum(1))
    near = states.query_ball_point(queries[:, :n_state], bound * (1 + 1e-9), return_sorted=False)
    sizes = np.fromiter(map(len, near), int, len(near))
    candidates = np.concatenate(near).astype(np.int64)
    owner = np.repeat(np.arange(len(queries)), sizes)
    d2 = ((keys[candidates] - queries[owner]) ** 2).sum(1)
    best = np.full(len(queries), np.inf)
    np.minimum.at(best, owner, d2)
    return np.sqrt(best)


def actor_actions(run: str, data, states: np.ndarray) -> tuple[str, np.ndarray]:
    """A row label and the deterministic actions of a run's actor at `states`; UserError
    unless the run's checkpoint recorded this dataset (training.offline.fingerprint)."""
    import evaluate

    agent, _, source, ckpt = evaluate.load_agent(run, None)
    expected = fingerprint(data)
    if {key: ckpt.get("dataset", {}).get(key) for key in expected} != expected:
        raise UserError(f"{source} was not trained on this dataset (its fingerprint differs)")
    updates = ckpt["counters"]["gradient_updates"]
    return f"actor at {updates:,} updates", agent.act(states, deterministic=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="halfcheetah-medium-v5")
    parser.add_argument("--beta", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], help="searches not to run")
    parser.add_argument("--leafsizes", type=int, nargs="*", default=[],
                        help="also time PRDC's tree with these leaf sizes (scipy: 16)")  # fmt: skip
    parser.add_argument("--run", default=None,
                        help="also time the queries of this run's actor (module doc)")  # fmt: skip
    parser.add_argument("--blocks", type=int, nargs="*", default=[2048],
                        help="block sizes of the `blocks` search")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_dataset(args.dataset)[0]
    obs = torch.as_tensor(data.observations, dtype=torch.float64)
    norm = DatasetNorm(obs.shape[1])  # PRDC's own state normalization (agents/td3_bc.py)
    norm.fit(obs)
    states = args.beta * norm(obs).numpy()
    act = data.actions.astype(np.float64)
    keys = np.concatenate([states, act], 1)
    print(f"{args.dataset}: {len(keys):,} keys of {keys.shape[1]} dimensions, beta {args.beta}")

    def timed_build(name: str, make) -> object:
        timer = time.perf_counter()
        built = make()
        print(f"build {name}: {time.perf_counter() - timer:.1f} s")
        return built

    tree = timed_build("kdtree", lambda: cKDTree(keys, balanced_tree=False))
    center = keys.mean(0)
    search = {"kdtree": lambda q: tree.query(q, k=1)[0]}
    for leaf in args.leafsizes:
        leafy = timed_build(
            f"kdtree-leaf{leaf}", lambda n=leaf: cKDTree(keys, leafsize=n, balanced_tree=False)
        )
        search[f"kdtree-leaf{leaf}"] = lambda q, t=leafy: t.query(q, k=1)[0]
    if "kdtree-pca" not in args.skip:
        axes = np.linalg.eigh(np.cov((keys - center).T))[1]
        rotated = timed_build(
            "kdtree-pca", lambda: cKDTree((keys - center) @ axes, balanced_tree=False)
        )
        search["kdtree-pca"] = lambda q: rotated.query((q - center) @ axes, k=1)[0]
    if "state-ball" not in args.skip:
        state_tree = timed_build("state-ball", lambda: cKDTree(states, balanced_tree=False))
        search["state-ball"] = lambda q: state_ball(state_tree, keys, q)
    if "blocks" not in args.skip:
        for size in args.blocks:
            blocks = timed_build(f"blocks{size}", lambda n=size: BlockSearch(keys, n))
            search[f"blocks{size}"] = lambda q, b=blocks: np.sqrt(((keys[b(q)] - q) ** 2).sum(1))

    rng = np.random.default_rng(args.seed)
    rows = rng.integers(0, len(keys), args.batch)
    low, high = act.min(0), act.max(0)
    own = act[rows]
    action_parts = {
        "own": own,
        "noise 0.2": np.clip(own + 0.2 * rng.standard_normal(own.shape), low, high),
        "noise 0.5": np.clip(own + 0.5 * rng.standard_normal(own.shape), low, high),
        "zeros": np.zeros_like(own),
        "uniform": rng.uniform(low, high, own.shape),
    }
    if args.run:
        try:
            label, actions = actor_actions(args.run, data, data.observations[rows])
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        action_parts[label] = actions.astype(np.float64)
    print(f"\nms per batch of {args.batch} queries | mean distance to the nearest key")
    print("| action part | " + " | ".join(search) + " | distance |")
    print("|---|" + "---:|" * (len(search) + 1))
    for label, part in action_parts.items():
        queries = np.concatenate([states[rows], part], 1)
        cells, exact = [], None
        for name, fn in search.items():  # kdtree first: its answer is the reference
            timer = time.perf_counter()
            found = fn(queries)
            cells.append(f"{1000 * (time.perf_counter() - timer):,.1f}")
            exact = found if exact is None else exact
            if not np.allclose(found**2, exact**2, rtol=0, atol=1e-9):
                print(f"{name} disagrees with the k-d tree on '{label}'", file=sys.stderr)
                return 1
        print(f"| {label} | " + " | ".join(cells) + f" | {exact.mean():.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
