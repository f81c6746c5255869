"""Compiled templates shared between processes: the cases render with Ansible's own templating in
processes forked one after the other from one that shares its templates, as Ansible's workers are
forked from ansible-playbook; the second must render every case without Jinja's code generator."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible._internal._templating._jinja_bits import AnsibleEnvironment

from ansible_collections.chajipoa.platform.plugins.plugin_utils import template_cache

COLLECTIONS = Path(__file__).resolve().parents[4] / "collections"

RENDER = r'''
import json, os, sys
import jinja2
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible_collections.chajipoa.platform.plugins.plugin_utils import template_cache


def render(forbid):
    if forbid:
        def refuse(*args, **kwargs):
            raise AssertionError("compiled, not loaded")
        jinja2.Environment._generate = refuse
    templar = Templar(loader=DataLoader(), variables={"n": 3, "names": ["b", "a"]})
    delimiters = dict(variable_start_string="[%", variable_end_string="%]")
    return {
        # The same sources, read two ways each: one compiled code for both would render one of them wrong.
        "escaped": templar.template(trust_as_template("{{ '\\n' | length }}")),
        "unescaped": templar.template(trust_as_template("{{ '\\n' | length }}"), escape_backslashes=False),
        "braces": templar.template(trust_as_template("{{ n }} [% n %]")),
        "brackets": templar.template(trust_as_template("{{ n }} [% n %]"), overrides=delimiters),
        "expression": templar.evaluate_expression(trust_as_template("names | sort | join(',') ~ n")),
        "condition": templar.template(trust_as_template("{{ n > 2 and 'a' in names }}")),
    }


if sys.argv[1]:
    template_cache.share(sys.argv[1])
for mode in sys.argv[2:]:
    child = os.fork()
    if child == 0:
        try:
            print(json.dumps(render(mode == "forbid")), flush=True)
        except Exception as error:
            print(json.dumps({"error": str(error)}), flush=True)
        os._exit(0)
    os.waitpid(child, 0)
'''


def render(parent: str, *modes: str) -> list[dict]:
    run = subprocess.run([sys.executable, "-c", RENDER, parent, *modes], capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(COLLECTIONS)})
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


@pytest.fixture(scope="module")
def unshared() -> dict:
    rendered, = render("", "compile")
    return rendered


def test_the_cases_differ_where_jinja_is_set_differently(unshared):
    assert unshared == {"escaped": 2, "unescaped": 1, "braces": "3 [% n %]", "brackets": "{{ n }} 3", "expression": "a,b3",
                        "condition": True}


def test_a_later_worker_loads_every_template_an_earlier_one_compiled(unshared, tmp_path):
    assert render(str(tmp_path), "compile", "forbid") == [unshared, unshared]
    directory, = tmp_path.iterdir()
    # One file per source and setting; none left half-written.
    assert len(list(directory.iterdir())) == len(unshared)
    assert all(len(path.name) == 64 for path in directory.iterdir())


def test_without_sharing_every_worker_compiles():
    assert render("", "compile", "forbid")[1] == {"error": "Error rendering template: compiled, not loaded"}


def test_where_no_directory_can_be_made_every_worker_compiles(unshared, tmp_path):
    assert render(str(tmp_path / "absent"), "compile", "forbid") == [unshared, {"error": "Error rendering template: compiled, not loaded"}]


def test_any_text_has_a_name_in_the_cache():
    """A template is text as Python holds it: lone surrogates too (bytes that were not UTF-8, or a
    code point written as an escape), which UTF-8 proper cannot encode."""
    environment = AnsibleEnvironment()
    names = {template_cache.key(environment, f"{character} {{{{ 1 }}}}", None, None, False) for character in ("\ud800", "\udcff", "x")}
    assert len(names) == 3 and all(len(name) == 64 for name in names)
