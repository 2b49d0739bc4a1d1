"""The import layers of DESIGN.md, read from the source with ast (no module is imported).

From the ground up: core/ (imported by every part), envs/ (imported by agents and the
harness, so it imports neither), agents/ and harness/ (the harness never imports a specific
agent), and above them datagen/ (dataset generation: it rolls out agents and measures them
with the harness), training/ (the loops), train.py, evaluate.py and bench/.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ABOVE = {"datagen", "training", "train", "evaluate", "bench"}
SHARED_AGENT_PIECES = {"__init__", "buffer", "nets"}  # agents/ files that are not an agent
FORBIDDEN = {
    "core": {"agents", "envs", "harness"} | ABOVE,
    "envs": {"agents", "harness"} | ABOVE,
    "agents": ABOVE,
    "harness": ABOVE,  # and any specific agent (agent_modules)
    "datagen": ABOVE - {"datagen"},
    "training": {"train", "evaluate", "bench"},  # the CLIs sit above the loops
}


def imports_of(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, dotted module) for every import in the file, inside functions too; relative
    imports resolved; `from X import y` also yields X.y (y may be a submodule)."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def agent_modules(root: Path) -> set[str]:
    """agents.<name> for every agent file (not the shared buffer, nets or registry)."""
    return {f"agents.{p.stem}" for p in (root / "agents").glob("*.py")
            if p.stem not in SHARED_AGENT_PIECES}  # fmt: skip


def violations(root: Path = REPO) -> list[str]:
    """'file:line imports module' for every import statement that breaks the layers above."""
    specific_agents = agent_modules(root)
    found = {}
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((root / layer).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, module in imports_of(path, root):
                top = module.split(".")[0]
                bad = top in forbidden or (layer == "harness" and module in specific_agents)
                if bad:
                    found.setdefault((rel, line), f"{rel}:{line} imports {module}")
    return list(found.values())


def test_every_layer_imports_only_what_lies_below_it():
    assert violations() == []


def test_the_checker_finds_each_kind_of_violation(tmp_path):
    files = {
        "agents/__init__.py": "",
        "agents/buffer.py": "",
        "agents/td3.py": "",
        "agents/sac.py": "",
        "envs/__init__.py": "from envs.gym_envs import make_env\n",
        "envs/datasets/gen.py": "def f():\n    from harness.evaluation import evaluate_policy\n",
        "envs/datasets/load.py": "from ...datagen import generate\nimport agents\n",
        "harness/ok.py": "from agents import get_agent_module\nfrom agents.buffer import B\n",
        "harness/bad.py": "from agents import td3\nimport agents.sac as sac\nimport train\n",
        "core/x.py": "from core.errors import UserError\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(tmp_path)
    assert found == [
        "envs/datasets/gen.py:2 imports harness.evaluation",
        "envs/datasets/load.py:1 imports datagen",
        "envs/datasets/load.py:2 imports agents",
        "harness/bad.py:1 imports agents.td3",
        "harness/bad.py:2 imports agents.sac",
        "harness/bad.py:3 imports train",
    ]
