"""chajipoa.platform.files' per-entry template_vars on real runs: one playbook on a local-connection host
renders one template into several files, each from values of its own, into a temporary directory, and
refuses template_vars where there is no template to give them to. Read back from Ansible's JSON report.
The module's other behaviour is tested against a lab container (tests/integration/test_files_module.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
TEMPLATE = "# {{ ansible_managed }}\nsite={{ site }} port={{ port }} from={{ template_path }}\n{% for name in names %}\nserver {{ name }}\n{% endfor %}\n"


def run_playbook(work: Path, *tasks: dict) -> dict:
    """The role's tasks, run on localhost: each task's result by name."""
    role = work / "roles" / "sites"
    for sub in ("tasks", "templates"):
        (role / sub).mkdir(parents=True, exist_ok=True)
    (role / "templates" / "site.conf.j2").write_text(TEMPLATE)
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(list(tasks), sort_keys=False))
    (work / "site.yml").write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "roles": ["sites"],
                                                    "vars": {"site": "play", "port": 1, "names": ["a", "b"]}}]))
    (work / "hosts.ini").write_text(f"host_a ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "hosts.ini"), str(work / "site.yml")],
                         cwd=work, capture_output=True, text=True, check=False, env=env)
    report = json.loads(run.stdout)
    return {task["task"]["name"].split(" : ")[-1]: task["hosts"]["host_a"] for play in report["plays"] for task in play["tasks"]}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("files")
    out = work / "out"
    site = {"template": "site.conf.j2"}
    tasks = [
        {"name": "Two sites from one template",
         "chajipoa.platform.files": {"files": [
             {"dest": str(out), "state": "directory"},
             {"dest": str(out / "public.conf"), **site, "template_vars": {"site": "public", "port": 443}},
             {"dest": str(out / "admin.conf"), **site, "template_vars": {"site": "admin", "port": 8443, "names": ["c"]}},
             {"dest": str(out / "plain.conf"), **site},
         ]}},
        {"name": "The same as ansible.builtin.template renders it",
         "ansible.builtin.template": {"src": "site.conf.j2", "dest": str(out / "public.builtin")},
         "vars": {"site": "public", "port": 443}},
        {"name": "template_vars without a template", "ignore_errors": True,
         "chajipoa.platform.files": {"files": [{"dest": str(out / "content.conf"), "content": "x\n", "template_vars": {"site": "x"}}]}},
        {"name": "template_vars that are not a dictionary", "ignore_errors": True,
         "chajipoa.platform.files": {"files": [{"dest": str(out / "list.conf"), **site, "template_vars": ["site"]}]}},
    ]
    return out, run_playbook(work, *tasks)


def test_each_entry_renders_with_its_own_template_vars_over_the_others(results):
    out, by_task = results
    result = by_task["Two sites from one template"]
    assert not result.get("failed"), result
    assert (out / "public.conf").read_text().splitlines()[1:] == ["site=public port=443 from=site.conf.j2", "server a", "server b"]
    assert (out / "admin.conf").read_text().splitlines()[1:] == ["site=admin port=8443 from=site.conf.j2", "server c"]
    # An entry without template_vars sees the play's variables, as before.
    assert (out / "plain.conf").read_text().splitlines()[1:] == ["site=play port=1 from=site.conf.j2", "server a", "server b"]


def test_template_vars_render_byte_for_byte_as_the_same_variables_do_in_ansible_builtin_template(results):
    out = results[0]
    assert (out / "public.conf").read_bytes() == (out / "public.builtin").read_bytes()


def test_template_vars_stay_on_the_controller(results):
    sent = results[1]["Two sites from one template"]["invocation"]["module_args"]["files"]
    assert [entry.get("template_vars") for entry in sent] == [None] * 4


@pytest.mark.parametrize(("task", "message"), [
    ("template_vars without a template", "content.conf: template_vars is for a template, and there is none"),
    ("template_vars that are not a dictionary", "list.conf: template_vars must be a dictionary"),
])
def test_template_vars_are_refused_where_no_template_can_take_them(results, task, message):
    out, by_task = results
    assert by_task[task]["failed"] and message in by_task[task]["msg"]
    assert not (out / "content.conf").exists() and not (out / "list.conf").exists()
