"""The protocol runs on the board: Python 3.7 syntax, stdlib + numpy, no pyserial needed."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The board side, and the host's protocol tools that also run in a board's Python.
HOST_TOOLS = ("client.py", "faults.py", "conformance.py", "overhead.py", "examples.py",
              "emulator.py")
BOARD_SAFE = sorted((ROOT / "firmware_host" / "protocol").glob("*.py")) + sorted(
    (ROOT / "firmware_host" / "bundle").glob("*.py")) + [
    ROOT / "firmware_host" / "transport.py"
] + [ROOT / "hil" / name for name in HOST_TOOLS]
ALLOWED_THIRD_PARTY = {"numpy", "firmware_host"}
# the harness's modules a board-safe module may import: the other board-safe host tools
BOARD_SAFE_HIL = {"hil"} | {"hil." + name.removesuffix(".py") for name in HOST_TOOLS}


def _imported(node) -> list[str]:
    """Dotted names an import statement loads (absolute imports only)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0:
        return [node.module]
    return []
NEWER_THAN_37 = (
    "math.prod",
    "cached_property",
    "removeprefix",
    "removesuffix",
    "shlex.join",
    "typing.Literal",
    "typing.Protocol",
    "typing.Final",
    "TypedDict",
    "functools.cache(",
    "zip(strict",
    "bit_count(",
    "slots=True",
    "kw_only=",
    "asyncio.to_thread",
    ".is_relative_to(",
    '=}"',
)


def module_ids(path):
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", BOARD_SAFE, ids=module_ids)
def test_module_parses_as_python_37(path):
    source = path.read_text()
    tree = ast.parse(source, filename=str(path), feature_version=(3, 7))
    first = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "__future__"
    ]
    assert first and first[0].names[0].name == "annotations", (
        "annotations must stay unevaluated on 3.7"
    )
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            assert not node.args.posonlyargs, "positional-only parameters need Python 3.8"
        assert not isinstance(node, ast.NamedExpr), "':=' needs Python 3.8"
    code_only = "\n".join(line.split("#")[0] for line in source.splitlines())
    for name in NEWER_THAN_37:
        assert name not in code_only, f"{name} needs a newer Python than the board's 3.7"


@pytest.mark.parametrize("path", BOARD_SAFE, ids=module_ids)
def test_module_imports_only_the_standard_library_and_numpy(path):
    tree = ast.parse(path.read_text())
    top_level = {name for node in tree.body for name in _imported(node)}
    harness = {name for name in top_level if name.split(".")[0] == "hil"}
    assert harness <= BOARD_SAFE_HIL, f"board-side module imports {sorted(harness)}"
    foreign = ({name.split(".")[0] for name in top_level - harness}
               - set(sys.stdlib_module_names) - ALLOWED_THIRD_PARTY)
    assert not foreign, f"board-side module imports {sorted(foreign)} at top level"
    everywhere = {name.split(".")[0] for node in ast.walk(tree) for name in _imported(node)}
    assert not everywhere & {
        "tensorflow",
        "scipy",
        "tinysep",
        "convert",
        "calibration",
        "cli",
        "tf_keras",
        "librosa",
        "pickle",
        "marshal",
    }


def test_protocol_and_transport_import_and_work_without_pyserial():
    script = (
        "import sys\n"
        "sys.modules['serial'] = None\n"  # as on a board without pyserial
        "import firmware_host.protocol.link, hil.client\n"
        "import firmware_host.protocol.upload, hil.faults\n"
        "import hil.overhead, firmware_host.transport as t\n"
        "from hil.emulator import PtyPair\n"
        "pair = PtyPair()\n"
        "stream = t.open_port(pair.slave_path)\n"
        "assert type(stream).__name__ == 'FdStream'\n"
        "pair.master_stream().write(b'ping')\n"
        "data = b''\n"
        "while len(data) < 4:\n"
        "    data += stream.read(10)\n"
        "assert data == b'ping'\n"
        "try:\n"
        "    t.open_port('socket://localhost:1')\n"
        "except RuntimeError as exc:\n"
        "    assert 'pyserial is needed' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('a URL needs pyserial')\n"
        "heavy = [m for m in ('tensorflow', 'scipy', 'tinysep', 'serial') if sys.modules.get(m)]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=str(ROOT), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
