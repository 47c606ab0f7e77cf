"""The package's layout holds: no import cycle, entry points thin and independent, short files and functions.

    .venv/bin/python -m pytest tests/test_layout.py -q

The import graph is read from the source (every `import gptlab...` and `from gptlab... import`, lazy ones inside
functions included), so a cycle that only shows at run time through a late import is caught too.
"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gptlab"
ENTRY_POINTS = {"train", "eval", "sample", "prepare", "report", "bench", "hf", "generations"}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in sorted(PKG.rglob("*.py"))}


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The gptlab modules a module imports anywhere in its body ('from gptlab.x import y' counts y if y is a module)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gptlab"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out |= subs or ({node.module} & known)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(tree, known) - {name} for name, tree in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(g):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def package_graph() -> dict[str, set[str]]:
    """The import graph between packages (gptlab.training, gptlab.analysis, ...; a top-level module is its own)."""
    pkg = lambda name: ".".join(name.split(".")[:2])  # noqa: E731
    out = {}
    for name, deps in graph().items():
        out.setdefault(pkg(name), set()).update(pkg(d) for d in deps if pkg(d) != pkg(name))
    return out


def test_no_package_level_cycle():
    """training may use analysis's fits, or analysis training's records, never both: layers, not a tangle."""
    assert find_cycle(package_graph()) is None, " -> ".join(find_cycle(package_graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_entry_points_import_no_other_entry_point_and_the_library_none():
    g = graph()
    entries = {f"gptlab.{e}" for e in ENTRY_POINTS}
    for name, deps in g.items():
        bad = deps & entries
        assert not bad, f"{name} imports the entry point(s) {sorted(bad)}"


def test_the_top_level_keeps_only_entry_points_and_shared_plumbing():
    top = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert ENTRY_POINTS <= top
    # machine: the facts a run records, read by training (machine.json) and by eval (a run from another machine)
    assert top - ENTRY_POINTS == {"cli", "errors", "fs", "devices", "hub", "units", "machine"}
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == \
        {"config", "optim", "run", "model", "data", "training", "evaluation", "analysis", "speed"}


def test_the_public_api_loads_lazily():
    import subprocess
    import sys
    code = ("import sys, gptlab; assert 'torch' not in sys.modules; from gptlab import GPT, GPTConfig, load_model; "
            "print(gptlab.__version__, GPT.__name__, GPTConfig().n_layer, load_model.__name__)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[1:] == ["GPT", "12", "load_model"]


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_files_and_functions_are_short(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path} has {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            assert n <= MAX_FUNCTION_LINES, f"{path}:{node.lineno} {node.name} has {n} lines"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_every_module_opens_with_a_docstring(path):
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no docstring"


def test_one_module_writes_files_atomically_and_hashes_them():
    """Writers go through gptlab.fs: nothing else renames temp files into place, fsyncs or takes a sha256."""
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if p.name != "fs.py"
                 and any(s in p.read_text() for s in ("os.replace(", "os.fsync(", "import hashlib"))]
    assert offenders == []


def option_keys() -> set[str]:
    """The modern options, read from their fields in gptlab/config/schema.py: each field made by option(...)."""
    tree = ast.parse((PKG / "config" / "schema.py").read_text())
    gpt = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "GPTConfig")
    return {s.target.id for s in gpt.body if isinstance(s, ast.AnnAssign) and isinstance(s.value, ast.Call)
            and getattr(s.value.func, "id", None) == "option"}


def option_lists(tree: ast.AST, keys: set[str]) -> list[int]:
    """The lines of literal tuples, lists, sets and dicts that name two or more of `keys` as strings ('pos' or
    'pos=rope'): hand-written lists of the options."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            items = node.keys if isinstance(node, ast.Dict) else node.elts
            words = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
            named = {w.partition("=")[0] for w in words}
            if len(named & keys) >= 2:
                out.append(node.lineno)
    return out


def test_model_option_lists_are_derived_from_the_schema():
    """Adding a model option touches its field in gptlab/config/schema.py (its metadata) and the block that computes
    it, nothing else: no other module writes out a list of the options; GPTConfig.options(), architecture_keys(),
    standard() and tried() derive every one from the fields."""
    keys = option_keys()
    assert {"pos", "qk_norm", "norm", "mlp", "tie_embeddings", "logit_softcap", "zero_init"} <= keys
    assert option_lists(ast.parse('A = ("n_layer", "pos", "mlp")\nB = {"qk_norm=true": 1, "norm=rmsnorm": 2}'),
                        keys) == [1, 2]  # the finder finds a tuple of keys and a dict of key=value names
    found = {name: lines for name, tree in modules().items()
             if name != "gptlab.config.schema" and (lines := option_lists(tree, keys))}
    assert found == {}, f"hand-written lists of the model options (derive them from GPTConfig): {found}"


def target_identity_checks(tree: ast.AST) -> list[int]:
    """The lines where a component is told apart by the name its _target_ holds: a comparison (==, in, ...) or a
    startswith/endswith/lower on x["_target_"], x.get("_target_") or a string naming a gptlab class path."""
    def names_target(node) -> bool:
        return any((isinstance(n, ast.Constant) and n.value == "_target_") for n in ast.walk(node))

    def class_path(node) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and \
            node.value.startswith("gptlab.") and node.value.rsplit(".", 1)[-1][:1].isupper()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(o, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                                                 for o in node.ops):
            sides = [node.left, *node.comparators]
            literal = (ast.Constant, ast.Tuple, ast.List, ast.Set)  # "_target_" in spec: the key itself, not a name
            if any(class_path(s) or (names_target(s) and not isinstance(s, literal)) for s in sides):
                out.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("startswith", "endswith", "lower") and names_target(node.func.value):
            out.append(node.lineno)
    return sorted(set(out))


def test_components_are_told_apart_by_type_not_by_name():
    """Is this optimizer Muon? Is this callback a drill? Answered by issubclass, never by the _target_ string."""
    bad = ast.parse('if run.optim["_target_"].endswith("MuonAdamW"): pass\n'
                    'x = "muon" in run.optim["_target_"].lower()\n'
                    'y = spec.get("_target_") == "gptlab.training.drills.BatchTrace"\n')
    assert target_identity_checks(bad) == [1, 2, 3]
    assert target_identity_checks(ast.parse('ok = "_target_" in spec\nfor k in ("_target_", "_partial_"): pass')) == []
    found = {name: lines for name, tree in modules().items() if (lines := target_identity_checks(tree))}
    assert found == {}, f"components told apart by their _target_ string (use issubclass): {found}"


LOWER = ("gptlab.config", "gptlab.optim", "gptlab.run", "gptlab.model", "gptlab.data", "gptlab.training",
         "gptlab.evaluation")  # the library below the command line, and every writer of a run's records


def test_training_and_the_run_import_neither_the_command_line_nor_analysis():
    """Training code writes records; it does not import the command-line layer, an entry point or the analysis that
    reads them. A run's life (gptlab.run) sits below training: it never imports training."""
    above = {"gptlab.cli"} | {f"gptlab.{e}" for e in ENTRY_POINTS}
    bad = []
    for name, deps in graph().items():
        if name.startswith(LOWER):
            bad += [f"{name} -> {d}" for d in deps if d in above or d.startswith("gptlab.analysis")]
        if name.startswith(("gptlab.run", "gptlab.optim", "gptlab.config")):
            bad += [f"{name} -> {d}" for d in deps if d.startswith("gptlab.training")]
    assert bad == []
