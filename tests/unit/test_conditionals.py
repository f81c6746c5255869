"""Every conditional in the project's roles and playbooks yields a boolean for every value its
variables' defaults allow (a class of fault, checked statically).

ansible-core 2.19 refuses a conditional whose result is not a boolean. `a and b` evaluates to one of
its operands, so `when: edge_frontend_source and ...` or `that: cert_file and key_file` with string
variables fails at run time, and only on the inputs the tests never gave (an empty frontend source,
certificates of a real CA). This walks every `when`, `that`, `failed_when`, `changed_when` and `until`,
finds the variables an expression can return as its value (operands of and/or, the arms of an
if-else, the expression itself; never under `not`, a test, a comparison or a filter other than
default), and fails on any whose default in a role's defaults or vars is a plain string."""
from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2 import nodes
import pytest

from tests.conftest import ROOT, load_yaml

KEYS = ("when", "that", "failed_when", "changed_when", "until")


def _string_defaults() -> set[str]:
    """Variables whose default is a plain string (a templated one may render to any type)."""
    names = set()
    for path in [*ROOT.glob("roles/*/defaults/main.yml"), *ROOT.glob("roles/*/vars/main.yml")]:
        for name, value in (load_yaml(path) or {}).items():
            if isinstance(value, str) and "{{" not in value:
                names.add(name)
    return names


STRING_DEFAULTS = _string_defaults()


def _expressions(node):
    """Every conditional expression below a parsed YAML node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in KEYS and not isinstance(value, (bool, type(None))):
                for expression in value if isinstance(value, list) else [value]:
                    if isinstance(expression, str):
                        yield expression
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


def _returned(node: nodes.Node) -> list[str]:
    """The variable names an expression can evaluate to as they are."""
    if isinstance(node, nodes.Name):
        return [node.name]
    if isinstance(node, (nodes.And, nodes.Or)):
        return _returned(node.left) + _returned(node.right)
    if isinstance(node, nodes.CondExpr):
        return _returned(node.expr1) + (_returned(node.expr2) if node.expr2 is not None else [])
    if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
        return _returned(node.node)
    return []


def _files() -> list[Path]:
    return sorted(path for pattern in ("roles/*/tasks/*.yml", "roles/*/handlers/*.yml", "playbooks/*.yml",
                                       "playbooks/tasks/*.yml", "molecule/*/*.yml")
                  for path in ROOT.glob(pattern))


CONDITIONALS = [(str(path.relative_to(ROOT)), expression) for path in _files()
                for expression in _expressions(load_yaml(path))]


def test_the_walk_finds_the_project_s_conditionals():
    assert len(CONDITIONALS) > 200


@pytest.mark.parametrize(("where", "expression"), CONDITIONALS, ids=lambda value: str(value)[:60])
def test_no_conditional_can_return_a_string(where, expression):
    environment = jinja2.Environment()
    parsed = environment.parse("{{ " + expression + " }}").body[0].nodes[0]
    strings = [name for name in _returned(parsed) if name in STRING_DEFAULTS]
    assert not strings, (f"{where}: `{expression}` evaluates to the string {', '.join(strings)} when that is "
                         "its value; compare it (`| length > 0`) so the conditional is a boolean")


@pytest.mark.parametrize(("expression", "returned"), [
    ("a and b", ["a", "b"]), ("not a", []), ("a | length > 0 and not b", []), ("a or b is defined", ["a"]),
    ("a if c else b", ["a", "b"]), ("a | default('')", ["a"]), ("a | bool", []), ("a == 'x'", []),
])
def test_the_returned_operands_are_found(expression, returned):
    parsed = jinja2.Environment().parse("{{ " + expression + " }}").body[0].nodes[0]
    assert _returned(parsed) == returned
