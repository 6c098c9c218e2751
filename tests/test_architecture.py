"""Every import follows the layers of docs/architecture.md: none points upwards, none closes a
circle, and the figure there is drawn from the same table.

``python tests/test_architecture.py --write`` redraws docs/figures/architecture.svg.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
FIGURE = ROOT / "docs" / "figures" / "architecture.svg"
PACKAGES = ("cli", "hil", "convert", "calibration", "tinysep", "firmware_host")


def layers() -> list[tuple[str, list[str], bool]]:
    """(name, paths, board side) of every layer, top first, from the table in the doc."""
    text = DOC.read_text()
    table = text.split("<!-- BEGIN LAYERS -->")[1].split("<!-- END LAYERS -->")[0]
    rows = []
    for line in table.strip().splitlines()[2:]:
        name, paths, board = (cell.strip() for cell in line.strip().strip("|").split("|"))
        rows.append((name, [p.strip() for p in paths.split(",")], board == "yes"))
    return rows


def layer_of(path: str, table) -> int:
    """Index of the layer whose longest path holds ``path`` (a file path from the root)."""
    best, index = -1, None
    for number, (_, paths, _) in enumerate(table):
        for prefix in paths:
            hit = path == prefix if prefix.endswith(".py") else path.startswith(prefix)
            if hit and len(prefix) > best:
                best, index = len(prefix), number
    assert index is not None, f"{path} is on no layer of {DOC.name}"
    return index


@functools.cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the kit (tests aside)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The kit's modules that module ``name`` imports anywhere (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            candidates = [c for c in candidates[:-1] if c in known] or [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


@functools.cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_import_points_upwards():
    table = layers()
    known = modules()
    place = {name: layer_of(str(path.relative_to(ROOT)), table) for name, path in known.items()}
    upward = [
        f"{known[a].relative_to(ROOT)} ({table[place[a]][0]}) imports "
        f"{known[b].relative_to(ROOT)} ({table[place[b]][0]})"
        for a, targets in graph().items() for b in sorted(targets) if place[b] < place[a]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_circles():
    edges = graph()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not circles, circles


def test_board_side_imports_only_the_board_side():
    table = layers()
    known = modules()
    board = {n for n, p in known.items() if table[layer_of(str(p.relative_to(ROOT)), table)][2]}
    outside = [f"{a} imports {b}" for a in sorted(board) for b in sorted(graph()[a])
               if b not in board]
    assert not outside, outside


def test_the_cli_names_no_module_in_a_string():
    known = modules()
    pattern = re.compile(r"^\w+(\.\w+)+(:\w+)?$")
    found = []
    for name, path in known.items():
        if name != "cli" and not name.startswith("cli."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names_module = (pattern.match(node.value)
                                and node.value.split(":")[0] in known)
                if names_module or "import_module" in node.value:
                    found.append(f"{name}: {node.value!r}")
            if isinstance(node, ast.Attribute) and node.attr == "import_module":
                found.append(f"{name}: importlib.import_module")
    assert not found, found


def render(table) -> str:
    """The layers as an SVG: one band a layer, top first, arrows pointing down."""
    width, band, gap, left = 860, 46, 18, 20
    board_top = next(i for i, row in enumerate(table) if row[2])
    height = 70 + len(table) * (band + gap) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<defs><marker id="down" markerWidth="8" markerHeight="8" refX="8" refY="4" '
        'orient="auto" markerUnits="userSpaceOnUse"><path d="M0,0 L8,4 L0,8 z" fill="#555"/>'
        "</marker></defs>",
        f'<text x="{left}" y="28" font-size="17" font-weight="bold">tinysep: layers, top '
        "first; a module imports only its own layer and those below</text>",
        f'<text x="{left}" y="50" font-size="13" fill="#444">data -&gt; dsp -&gt; model -&gt; '
        "convert -&gt; bundle -&gt; board -&gt; report</text>",
    ]
    for number, (name, paths, board) in enumerate(table):
        y = 70 + number * (band + gap)
        fill = "#f6dfe4" if board else ("#dfe9f6" if number else "#e4f3e1")
        out.append(f'<rect x="{left}" y="{y}" width="{width - 2 * left - 150}" height="{band}" '
                   f'rx="6" fill="{fill}" stroke="#667"/>')
        out.append(f'<text x="{left + 12}" y="{y + 20}" font-size="15" font-weight="bold">'
                   f"{escape(name)}</text>")
        out.append(f'<text x="{left + 12}" y="{y + 38}" font-size="12" fill="#333">'
                   f"{escape(', '.join(paths))}</text>")
        if number + 1 < len(table):
            x = width - 2 * left - 150 + left - 40
            out.append(f'<line x1="{x}" y1="{y + band + 1}" x2="{x}" y2="{y + band + gap - 1}" '
                       'stroke="#555" stroke-width="2" marker-end="url(#down)"/>')
            out.append(f'<text x="{x + 8}" y="{y + band + 13}" font-size="10" fill="#555">'
                       "imports</text>")
    top = 70 + board_top * (band + gap) - gap // 2
    bottom = 70 + len(table) * (band + gap) - gap
    out.append(f'<line x1="{width - 150}" y1="{top}" x2="{width - 150}" y2="{bottom}" '
               'stroke="#a33" stroke-width="2"/>')
    out.append(f'<text x="{width - 140}" y="{(top + bottom) // 2 - 8}" font-size="12" '
               'fill="#a33">board side:</text>')
    out.append(f'<text x="{width - 140}" y="{(top + bottom) // 2 + 8}" font-size="12" '
               'fill="#a33">Python 3.7 + numpy</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def test_the_figure_is_drawn_from_the_table():
    assert FIGURE.read_text() == render(layers()), (
        "docs/figures/architecture.svg is stale: python tests/test_architecture.py --write")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        FIGURE.write_text(render(layers()))
        print(f"wrote {FIGURE}")
    else:
        print(__doc__)
