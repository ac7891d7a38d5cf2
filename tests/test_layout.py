"""The shape of the code: core and train free of QGIS and Qt (they run headless on GPU servers), no import cycles,
imports at the top unless a comment says what a late one guards."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path


def test_core_and_train_never_import_qgis(repo_root):
    code = (
        "import sys, json, importlib, pkgutil\n"
        "import core, train\n"
        "for pkg in (core, train):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name.endswith('__main__'): continue\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6', 'sip'))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


#: Packages whose modules import each other, and folders of scripts; softcon_qgis/core is the repository's core.
PACKAGES = ("core", "train", "softcon_qgis")
SCRIPTS = ("benchmarks", "scripts", "tests")


def _module_files(root: Path) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (root / pkg).rglob("*.py"):
            rel = f.relative_to(root)
            if rel.parts[:2] == ("softcon_qgis", "core"):
                continue
            name = ".".join(rel.with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def _imported(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The project modules an import statement loads (``from .x import y`` loads ``pkg.x.y`` if it is a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = ".".join(p for p in ((base if node.level else ""), node.module or "") if p)
        names = [f"{target}.{a.name}" if f"{target}.{a.name}".removeprefix("softcon_qgis.") in known
                 or f"{target}.{a.name}" in known else target for a in node.names]
    return [n.removeprefix("softcon_qgis.") if n.startswith("softcon_qgis.core") else n for n in names]


def _function_level(tree: ast.AST) -> list[ast.AST]:
    found = []

    def walk(node, inside):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and inside:
                found.append(child)
            walk(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    walk(tree, False)
    return found


def test_no_import_cycles_counting_function_level_imports(repo_root):
    """A lazy import hides a cycle from Python, not from the design: the shared piece belongs lower down."""
    files = _module_files(repo_root)
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(d for d in _imported(node, name, path.name == "__init__.py", files) if d in files)
        graph[name] = deps - {name}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def strong(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    assert cycles == []
    assert {"core.models.encoders", "core.models.galileo", "train.data", "train.pack"} <= set(graph)  # it looked


def test_function_level_imports_say_what_they_guard(repo_root):
    """Imports belong at the top; one inside a function guards something (torch before it is installed, QGIS
    outside QGIS...) and says so in a comment on it, or on the line above its group of imports."""
    silent = []
    paths = [p for d in PACKAGES + SCRIPTS for p in (repo_root / d).rglob("*.py")
             if "softcon_qgis/core" not in p.as_posix()]
    for path in paths:
        lines = path.read_text().splitlines()
        for node in _function_level(ast.parse("\n".join(lines))):
            i = node.lineno - 1
            while i > 0 and re.match(r"\s*((from \S+ )?import |$)", lines[i - 1]) and "#" not in lines[i]:
                i -= 1  # up through the group of imports this one belongs to
            commented = any("#" in lines[j] for j in range(i, node.end_lineno)) or lines[i - 1].strip().startswith("#")
            if not commented:
                silent.append(f"{path.relative_to(repo_root)}:{node.lineno}")
    assert silent == []


#: The most parameters a function in core/ takes (``self``/``cls`` not counted): data that travels together goes
#: in one small frozen dataclass (``EmbedSpec``, ``FitSpec``, ``Samples``, ``TrainingSet``, ``OutputOptions``).
MAX_PARAMETERS = 10
#: Allowed more, and why. ``BlockWriter.__init__``: keyword-only GDAL creation options (size, CRS, dtype, nodata,
#: compression, COG...), each with its own default, as rasterio's profile names them; callers set two or three.
MORE_PARAMETERS = {"core/io/writer.py:BlockWriter.__init__"}


def test_no_function_in_core_takes_more_than_ten_parameters(repo_root):
    """Ten positional and keyword parameters are as many as a call site can read; beyond that, some of them
    travel together and belong in one object."""
    many = []
    for path in sorted((repo_root / "core").rglob("*.py")):
        tree = ast.parse(path.read_text())

        def walk(node, prefix):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a = child.args
                    names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
                    if names[:1] in (["self"], ["cls"]):
                        names = names[1:]
                    where = f"{path.relative_to(repo_root).as_posix()}:{prefix}{child.name}"
                    if len(names) > MAX_PARAMETERS and where not in MORE_PARAMETERS:
                        many.append(f"{where} ({len(names)})")
                    walk(child, f"{prefix}{child.name}.")
                else:
                    walk(child, prefix)

        walk(tree, "")
    assert many == []
