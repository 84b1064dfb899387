"""Who may import whom (DESIGN §2, ARCHITECTURE.md), read from the source with ``ast``: nothing is imported here."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: import name -> folder (setup.cfg's package_dir)
SIDES = {"datahavn.hub_config": "hub_config", "datahavn.extensions": "extensions", "datahavn.kernels": "kernels"}


def modules() -> dict[str, Path]:
    """Every module of the distribution, by its import name."""
    out = {}
    roots = {"datahavn": REPO / "datahavn", **{name: REPO / folder for name, folder in SIDES.items()}}
    for name, root in roots.items():
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([name, *parts])] = path
    return out


def imports_of(name: str, path: Path) -> set[str]:
    """Absolute names of what the module imports (at any depth: lazy imports count too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            found.add(target)
            # "from . import x" names submodules too
            found.update(f"{target}.{a.name}" for a in node.names)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {i for i in imports_of(name, path) if i in mods} for name, path in mods.items()}


def side_of(name: str) -> str:
    return next((side for side in SIDES if name == side or name.startswith(side + ".")), "datahavn")


def test_the_shared_package_imports_no_side_and_no_numba():
    mods = modules()
    for name, path in mods.items():
        if side_of(name) != "datahavn":
            continue
        found = imports_of(name, path)
        sides = {i for i in found if side_of(i) != "datahavn" and i.startswith("datahavn.")}
        assert not sides, f"{name} imports {sides}"
        assert not {i for i in found if i.split(".")[0] == "numba"}, f"{name} imports numba"


def test_kernel_code_imports_neither_the_hub_nor_the_extensions():
    for name, path in modules().items():
        if side_of(name) == "datahavn.kernels":
            found = {side_of(i) for i in imports_of(name, path) if i.startswith("datahavn.")}
            assert found <= {"datahavn", "datahavn.kernels"}, f"{name} imports {found}"


def test_extensions_reach_the_audit_service_over_http_only():
    for name, path in modules().items():
        if side_of(name) == "datahavn.extensions":
            assert not any(i.startswith("datahavn.hub_config") for i in imports_of(name, path)), name


def test_no_import_cycle():
    g = graph()
    # a package's __init__ re-exporting its submodules is not a cycle of their making
    edges = {m: {i for i in deps if i != m and not m.startswith(i + ".")} for m, deps in g.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])


def test_modules_stay_small():
    """No module over ~400 lines but the audit store, which is one thing: its format, writer and verifier."""
    allowed = {"datahavn.hub_config.audit.store"}
    big = {n: len(p.read_text().splitlines()) for n, p in modules().items() if n not in allowed}
    assert all(lines <= 420 for lines in big.values()), {n: x for n, x in big.items() if x > 420}


def test_the_kernel_library_loads_light_in_the_users_environment():
    """``import datahavn.kernels`` (every kernel's first line) loads neither numba nor the importer."""
    import subprocess

    from datahavn.paths import DEFAULT_USER_ENV

    code = "import sys, datahavn.kernels; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([f"{DEFAULT_USER_ENV}/bin/python", "-I", "-c", code], capture_output=True, text=True,
                         cwd="/", check=True).stdout.split()  # fmt: skip
    assert "datahavn.kernels" in out
    assert not [m for m in out if m.split(".")[0] in ("numba", "msprime") or m.startswith("datahavn.hub_config")]
