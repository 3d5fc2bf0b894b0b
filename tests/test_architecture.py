"""Imports flow one way (docs/architecture.md): entry points -> quick_start -> trainer / model / data
-> semantic_ids -> config / utils -> the ground floor. Every import of the package's own modules
is read from the source (those inside functions too) and checked against these floors."""
import ast
import os

from conftest import REPO_ROOT

# floor of each part, lowest first; a module may import its own floor's modules or lower ones
FLOORS = [
    ["recbole_tiger", "recbole_tiger.compat", "recbole_tiger.atomic_io", "recbole_tiger.settings",
     "recbole_tiger.precision"],
    ["recbole_tiger.utils", "recbole_tiger.config"],
    ["recbole_tiger.semantic_ids"],
    ["recbole_tiger.data"],
    ["recbole_tiger.model"],
    ["recbole_tiger.trainer"],
    ["recbole_tiger.quick_start", "recbole_tiger.hyper"],
    ["recbole_tiger.benchmark", "recbole_tiger.llm"],
    ["recbole_tiger.demo", "recbole_tiger.rerank"],
    ["benchmarks", "run_recbole_tiger", "run_benchmark", "run_hyper"],
]


def floor_of(module):
    """The floor of the longest part that ``module`` is (or is inside)."""
    best = None
    for floor, parts in enumerate(FLOORS):
        for part in parts:
            if (module == part or module.startswith(part + ".")) and (best is None or len(part) > len(best[1])):
                best = (floor, part)
    return best


def source_modules():
    """{module name: path} of the package, the lab and the entry points."""
    found = {}
    for top in ("recbole_tiger", "benchmarks"):
        for root, _, files in os.walk(os.path.join(REPO_ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, name), REPO_ROOT)[:-3].split(os.sep)
                    if rel[-1] == "__init__":
                        rel = rel[:-1]
                    found[".".join(rel)] = os.path.join(root, name)
    for script in ("run_recbole_tiger", "run_benchmark", "run_hyper"):
        found[script] = os.path.join(REPO_ROOT, script + ".py")
    return found


def own_imports(path, module):
    """Modules of this project that ``path`` imports, anywhere in the file."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in ("recbole_tiger", "benchmarks")}


def test_every_module_has_a_floor():
    assert [m for m in source_modules() if floor_of(m) is None] == []


def test_imports_never_run_back_up():
    upward = []
    for module, path in source_modules().items():
        here = floor_of(module)
        for target in own_imports(path, module):
            there = floor_of(target)
            if there is not None and there[0] > here[0]:
                upward.append(f"{module} (floor {here[0]}) imports {target} (floor {there[0]})")
    assert upward == []


def test_no_import_circles_between_modules():
    modules = source_modules()
    graph = {m: {t for t in own_imports(p, m) if t in modules and t != m} for m, p in modules.items()}
    # a package's face (__init__) re-exports its modules: an arrow into it is an arrow to them
    state, circles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if nxt in stack and not (node.startswith(nxt + ".")):
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif state.get(nxt) is None:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in graph:
        if state.get(module) is None:
            visit(module, [module])
    assert circles == []


def test_the_library_never_imports_the_lab():
    offenders = [m for m, p in source_modules().items()
                 if m.startswith("recbole_tiger") and any(t.startswith("benchmarks") for t in own_imports(p, m))]
    assert offenders == []
