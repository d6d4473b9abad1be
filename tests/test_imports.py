"Data flows one way: no avss_nb module imports, directly or through others, a module that imports it back."
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent/'avss_nb'


def _imports(path:Path) -> set[str]:
    "avss_nb modules a file imports anywhere in it (top level, inside functions, `from . import x`)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('avss_nb.')}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.add(node.module.split('.')[0])
            elif node.level == 1: out |= {a.name for a in node.names}
            elif node.module and node.module.startswith('avss_nb.'): out.add(node.module.split('.')[1])
            elif node.module == 'avss_nb': out |= {a.name for a in node.names}
    return out


def import_graph() -> dict[str, set[str]]:
    mods = {p.stem for p in PKG.glob('*.py') if p.stem != '__init__'}
    return {m: (_imports(PKG/f'{m}.py') & mods) - {m} for m in mods}


def cycles(graph:dict) -> list[list[str]]:
    "One cycle per strongly connected component with more than one module (Tarjan)."
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in sorted(graph[v]):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index: visit(v)
    return out


def test_the_walker_sees_lazy_imports(tmp_path):
    f = tmp_path/'m.py'
    f.write_text("from .a import x\ndef g():\n    from avss_nb.b import y\n    import avss_nb.c\n")
    assert _imports(f) == {'a', 'b', 'c'}
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_no_import_circles():
    found = cycles(import_graph())
    assert not found, "import circles (each module's imports must point down the chain): " + \
        '; '.join(' <-> '.join(c) for c in found)
