"""No file a user might be handed is unpickled: every load in the package code says so explicitly.

torch.load needs weights_only=True, np.load allow_pickle=False, and pickle is used by the TAP-Vid
reader alone (cotracker3/evaluation/datasets.py, which asks the caller's permission and admits only arrays).
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cotracker3", "sfm_tracks", "pipelines")
SKIP = ("cotracker3/training/", "pipelines/train.py")  # the training checkpoints' own change (issue 12, branch h5)
PICKLE_READER = "cotracker3/evaluation/datasets.py"


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def unsafe_loads(source: str, rel: str) -> list[str]:
    """'file:line what' for each load that could unpickle without saying it must not."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)):
            continue
        owner, name = node.func.value.id, node.func.attr
        where = f"{rel}:{node.lineno} {owner}.{name}"
        if owner == "torch" and name == "load" and _keyword(node, "weights_only") is not True:
            found.append(where + " without weights_only=True")
        elif owner in ("np", "numpy") and name == "load" and _keyword(node, "allow_pickle") is not False:
            found.append(where + " without allow_pickle=False")
        elif owner == "pickle" and name in ("load", "loads", "Unpickler") and rel != PICKLE_READER:
            found.append(where + " outside the TAP-Vid reader")
    for node in ast.walk(ast.parse(source)):  # subclassing the unpickler counts as using it
        if isinstance(node, ast.ClassDef) and rel != PICKLE_READER:
            if any(isinstance(b, ast.Attribute) and b.attr == "Unpickler" for b in node.bases):
                found.append(f"{rel}:{node.lineno} an Unpickler outside the TAP-Vid reader")
    return found


def test_the_checker_catches_unsafe_loads():
    bad = ("import torch, numpy as np, pickle\n"
           "torch.load(p)\ntorch.load(p, weights_only=False)\nnp.load(p)\nnp.load(p, allow_pickle=True)\n"
           "pickle.load(f)\nclass U(pickle.Unpickler): pass\n"
           "torch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\n")
    assert [w.split(" ", 1)[0] for w in unsafe_loads(bad, "x.py")] == [f"x.py:{i}" for i in range(2, 8)]


def test_package_code_never_unpickles_user_files():
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(SKIP):
                found += unsafe_loads(path.read_text(), rel)
    assert found == []
