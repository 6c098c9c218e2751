"""The board agent runs on a board: Python 3.7 syntax, the standard library, numpy and a TFLite
runtime (imported inside functions only), never tinysep, TensorFlow at import time, or pickle.
Its real run under Python 3.7 with tflite_runtime is `make board-test`.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
AGENT_FILES = sorted((ROOT / "firmware_host" / "board").glob("*.py"))
RUNTIME_PACKAGES = {"ai_edge_litert", "tflite_runtime", "tensorflow", "tflite_micro"}
NEVER = {"tinysep", "tf_keras", "scipy", "librosa", "pickle", "marshal", "serial", "convert"}


def _ids(path):
    return path.name


@pytest.mark.parametrize("path", AGENT_FILES, ids=_ids)
def test_agent_module_is_python_37(path):
    source = path.read_text()
    tree = ast.parse(source, filename=str(path), feature_version=(3, 7))
    futures = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    assert futures and futures[0].names[0].name == "annotations"
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            assert not node.args.posonlyargs, "positional-only parameters need Python 3.8"
        assert not isinstance(node, ast.NamedExpr), "':=' needs Python 3.8"
        if isinstance(node, ast.keyword):
            assert node.arg != "strict", "zip(strict=) needs Python 3.10"
    assert '=}"' not in source and "=}'" not in source, "f-string '=' needs Python 3.8"


@pytest.mark.parametrize("path", AGENT_FILES, ids=_ids)
def test_agent_module_imports_only_what_a_board_has(path):
    tree = ast.parse(path.read_text())
    top, anywhere = set(), set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module.split(".")[0]]
        anywhere.update(names)
        if node in tree.body:
            top.update(names)
    assert not anywhere & NEVER, f"imports {sorted(anywhere & NEVER)}"
    allowed = set(sys.stdlib_module_names) | {"numpy", "firmware_host"}
    assert top <= allowed, f"imports {sorted(top - allowed)} at module level"
    source = path.read_text()
    for package in RUNTIME_PACKAGES:  # runtimes come through importlib, inside functions
        assert f"import {package}" not in source


def test_agent_starts_without_tinysep_pyserial_or_a_runtime_and_says_what_is_missing(tmp_path):
    script = (
        "import sys\n"
        "for name in ('serial', 'tinysep', 'tensorflow', 'ai_edge_litert', 'tflite_runtime',\n"
        "             'tflite_micro'):\n"
        "    sys.modules[name] = None\n"
        "from firmware_host.board.__main__ import main\n"
        f"code = main(['--port', '/dev/null', '--bundle', {str(tmp_path)!r}])\n"
        "print('exit', code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=str(ROOT), capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.strip() == "exit 2", result.stderr
    assert "no TFLite runtime could be imported" in result.stderr
    assert "install ai-edge-litert or tflite-runtime" in result.stderr
