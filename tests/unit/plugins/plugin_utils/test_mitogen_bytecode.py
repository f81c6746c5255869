"""Compiled code kept between runs on a host Mitogen reaches: the cache gives back the code compile()
gives, keyed by everything that shapes it, only from a directory of the account's alone. The lab
test (tests/integration/test_mitogen_strategy.py) runs it on a host through the strategy."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.chajipoa.platform.plugins.plugin_utils import mitogen_bytecode

SOURCE = "def answer(x):\n    return x * 6\n\nRESULT = answer(7)\n"
COLLECTIONS = Path(__file__).resolve().parents[4] / "collections"


@pytest.fixture()
def compiles(monkeypatch) -> list[tuple]:
    """Every call that reached Python's own compile() (test double of the builtin, counting calls)."""
    calls = []
    real = mitogen_bytecode._BUILTIN_COMPILE

    def counting(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(mitogen_bytecode, "_BUILTIN_COMPILE", counting)
    return calls


def entries(path: Path) -> list[Path]:
    return sorted(path.iterdir())


def run(code) -> dict:
    namespace: dict = {}
    exec(code, namespace)  # pylint: disable=exec-used
    return namespace


def test_the_second_compile_of_a_source_is_read_from_the_cache(tmp_path, compiles):
    compile_cached = mitogen_bytecode.cached_compile(str(tmp_path))
    first = compile_cached(SOURCE, "master:/x/answer.py", "exec", 0, True)
    assert len(compiles) == 1 and len(entries(tmp_path)) == 1
    # A new process: the code is read from the directory, not compiled.
    second = mitogen_bytecode.cached_compile(str(tmp_path))(SOURCE, "master:/x/answer.py", "exec", flags=0, dont_inherit=True)
    assert len(compiles) == 1
    assert second == first == compile(SOURCE, "master:/x/answer.py", "exec", 0, True)
    assert second.co_filename == "master:/x/answer.py" and run(second)["RESULT"] == 42


@pytest.mark.parametrize("other", [
    ("master:/x/other.py", "exec", 0, True, -1),   # another file's name (tracebacks show it)
    ("master:/x/answer.py", "exec", 0, True, 2),    # another optimisation level (asserts, docstrings)
])
def test_code_compiled_differently_is_kept_apart(tmp_path, compiles, other):
    compile_cached = mitogen_bytecode.cached_compile(str(tmp_path))
    compile_cached(SOURCE, "master:/x/answer.py", "exec", 0, True, -1)
    code = compile_cached(SOURCE, *other)
    assert len(compiles) == 2 and len(entries(tmp_path)) == 2
    assert code == compile(SOURCE, *other)


def test_a_changed_source_is_compiled_anew(tmp_path, compiles):
    compile_cached = mitogen_bytecode.cached_compile(str(tmp_path))
    compile_cached(SOURCE, "a.py", "exec", 0, True)
    changed = compile_cached(SOURCE.replace("6", "7"), "a.py", "exec", 0, True)
    assert len(compiles) == 2 and run(changed)["RESULT"] == 49


def test_bytes_and_text_of_one_source_are_both_right(tmp_path, compiles):
    compile_cached = mitogen_bytecode.cached_compile(str(tmp_path))
    assert run(compile_cached(SOURCE.encode(), "a.py", "exec", 0, True))["RESULT"] == 42
    assert run(compile_cached(SOURCE, "a.py", "exec", 0, True))["RESULT"] == 42


def test_flags_inherited_flags_and_syntax_trees_go_to_compile_and_are_not_kept(tmp_path, compiles):
    compile_cached = mitogen_bytecode.cached_compile(str(tmp_path))
    tree = compile_cached(SOURCE, "a.py", "exec", ast.PyCF_ONLY_AST, True)
    assert isinstance(tree, ast.Module)
    assert run(compile_cached(tree, "a.py", "exec", 0, True))["RESULT"] == 42
    assert run(compile_cached(SOURCE, "a.py", "exec"))["RESULT"] == 42
    assert len(compiles) == 3 and entries(tmp_path) == []


def test_a_source_that_does_not_compile_raises_as_compile_does(tmp_path):
    with pytest.raises(SyntaxError):
        mitogen_bytecode.cached_compile(str(tmp_path))("def broken(:\n", "broken.py", "exec", 0, True)
    assert entries(tmp_path) == []


def test_a_damaged_entry_is_compiled_again_and_replaced(tmp_path, compiles):
    compile_cached = mitogen_bytecode.cached_compile(str(tmp_path))
    compile_cached(SOURCE, "a.py", "exec", 0, True)
    [entry] = entries(tmp_path)
    entry.write_bytes(b"\xe3not marshal")
    assert run(compile_cached(SOURCE, "a.py", "exec", 0, True))["RESULT"] == 42
    assert len(compiles) == 2 and entries(tmp_path) == [entry]
    compile_cached(SOURCE, "a.py", "exec", 0, True)
    assert len(compiles) == 2


def test_the_directory_is_the_accounts_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = Path(mitogen_bytecode.directory())
    assert path == tmp_path / ".cache" / "chajipoa" / "mitogen-bytecode"
    assert path.stat().st_mode & 0o777 == 0o700
    # Code others could write would run as this account: such a directory is not used.
    path.chmod(0o770)
    assert mitogen_bytecode.directory() is None


def test_entries_not_read_for_the_keeping_time_are_removed(tmp_path):
    compile_cached = mitogen_bytecode.cached_compile(str(tmp_path))
    compile_cached(SOURCE, "old.py", "exec", 0, True)
    [old] = entries(tmp_path)
    compile_cached(SOURCE, "recent.py", "exec", 0, True)
    [recent] = set(entries(tmp_path)) - {old}
    long_ago = time.time() - (mitogen_bytecode.CACHE_DAYS + 1) * 86400
    os.utime(old, (long_ago, long_ago))
    os.utime(recent, (long_ago, long_ago))
    compile_cached(SOURCE, "recent.py", "exec", 0, True)  # a read keeps an entry
    mitogen_bytecode.prune(str(tmp_path))
    assert entries(tmp_path) == [recent]


# What the strategy does on each host, in a process of its own: the file's text run as Mitogen runs it.
INSTALL = r"""
import sys
from pathlib import Path
import mitogen.core
import ansible_mitogen.runner
exec(Path(sys.argv[1]).read_text(), {"__name__": "__mitogen_bytecode__"})
cached = mitogen.core.Importer.exec_module.__globals__["compile"]
print(cached is not compile, ansible_mitogen.runner.compile is cached)
namespace = {}
exec(cached("RESULT = 6 * 7\n", "master:/m.py", "exec", 0, True), namespace)
print(namespace["RESULT"])
"""


def test_run_as_mitogen_runs_it_the_importer_and_the_module_runner_compile_through_the_cache(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    output = subprocess.run([sys.executable, "-c", INSTALL, mitogen_bytecode.__file__], capture_output=True, text=True,
                            check=True, env=dict(os.environ, HOME=str(home), PYTHONPATH=str(COLLECTIONS))).stdout
    assert output.split() == ["True", "True", "42"]
    assert len(list((home / ".cache" / "chajipoa" / "mitogen-bytecode").iterdir())) == 1
