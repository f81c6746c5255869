"""chajipoa.platform.preflight on real runs: one playbook on a local-connection host whose every task
is a known case (all pass, several fail, a loop with item variables, a skipped check, a check that
cannot be judged, check mode, a malformed check), read back from Ansible's JSON report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.chajipoa.platform.plugins.action.preflight import CHECK_KEYS

ROOT = Path(__file__).resolve().parents[4]

PLAYBOOK = """
- name: Preflight cases
  hosts: all
  gather_facts: false
  vars:
    admins: [{name: amina, keys: [k1]}, {name: "Bad Name", keys: [k2]}, {name: juma, keys: []}]
    port: 70000
    tls_self_signed: true
    banner: "authorised use only.\\na second line"
    banner_lines: [authorised use only., "a bell\\x07"]
    release: "release 42"
  tasks:
    - name: Everything passes
      chajipoa.platform.preflight:
        checks:
          - name: Check the port's type
            that: port is integer
            fail_msg: never shown
          - name: Check two conditions
            that: [true, "admins | length == 3"]
            fail_msg: never shown

    - name: Several checks fail
      ignore_errors: true
      chajipoa.platform.preflight:
        checks:
          - name: Check the port
            that: port | int <= 65535
            fail_msg: "port: {{ port }} is not a port"
          - name: Check the administrators
            loop: "{{ admins }}"
            label: "{{ item.name }}"
            vars:
              key_count: "{{ item['keys'] | length }}"
            that:
              - item.name is match('^[a-z]+$')
              - key_count | int > 0
            fail_msg: "admins: {{ item.name | to_json }} needs a lower-case name and a key ({{ key_count }} keys)"
          - name: Check the TLS files
            when: not tls_self_signed
            that: false
            fail_msg: skipped, so never shown
          - name: Check a value nobody set
            that: nobody_set > 0
            fail_msg: not shown either, since the check cannot be judged
          - name: Check after the failures
            that: port > 0
            fail_msg: passes

    - name: A custom loop variable
      ignore_errors: true
      chajipoa.platform.preflight:
        checks:
          - name: Check the groups
            loop: "{{ ['admins', 'bad group'] }}"
            loop_var: group
            that: group is match('^[a-z]+$')
            fail_msg: "groups: {{ group | to_json }} is not a group name"

    - name: A loop with an empty item
      ignore_errors: true
      chajipoa.platform.preflight:
        checks:
          - name: Check the ports
            loop: "{{ [80, none] }}"
            loop_var: port_item
            that: port_item is number
            fail_msg: a port is missing

    # Each check below fails or cannot be judged whether its conditions are rendered together (the
    # plugin's first pass) or one at a time: the messages are the one-at-a-time ones. Control
    # characters have a task of their own: a check that cannot be judged ends the first pass of its task.
    - name: Control characters
      ignore_errors: true
      chajipoa.platform.preflight:
        checks:
          - name: Check for control characters
            that: banner is not search('[\\\\x00-\\\\x08\\\\x0a-\\\\x1f]')
            fail_msg: "banner: {{ banner | to_json }} holds a control character"
          - name: Check each line for control characters
            loop: "{{ banner_lines }}"
            that: item is not search('[\\\\x00-\\\\x08\\\\x0a-\\\\x1f]')
            fail_msg: "banner_lines: {{ item | to_json }} holds a control character"

    # A pattern that would mean something else with its backslashes escaped once more (a backslash
    # and a d): the first pass must read it as Ansible reads a condition.
    - name: A backslash escape
      ignore_errors: true
      chajipoa.platform.preflight:
        checks:
          - name: Check the release for digits
            that: release is not search('\\\\d')
            fail_msg: "release: {{ release | to_json }} holds a digit"

    - name: Checks the first pass must not let through
      ignore_errors: true
      chajipoa.platform.preflight:
        checks:
          - name: Check a condition that is not a boolean
            that: port
            fail_msg: never shown, since the check cannot be judged
          - name: Check behind a condition that is not a boolean
            when: port
            that: true
            fail_msg: never shown, since the check cannot be judged
          - name: Check the second condition after the first held
            that: [true, port < 0]
            fail_msg: "port: {{ port }} is not negative"
          - name: Check everything else
            loop: "{{ banner_lines }}"
            that: item is string
            fail_msg: never shown, every line is a string

    - name: An item that cannot be judged
      ignore_errors: true
      chajipoa.platform.preflight:
        checks:
          - name: Check an item without the attribute
            loop: "{{ admins + [{'keys': []}] }}"
            that: item.name is string
            fail_msg: never shown, since the check cannot be judged

    - name: A check without its message
      ignore_errors: true
      chajipoa.platform.preflight:
        checks:
          - name: Check something
            that: true
            fail_mesage: typo
"""


def run_playbook(tmp_path_factory, *extra: str) -> dict:
    work = tmp_path_factory.mktemp("preflight")
    (work / "site.yml").write_text(PLAYBOOK)
    (work / "hosts.ini").write_text(f"host_a ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(work / "hosts.ini"),
                          str(work / "site.yml"), *extra], cwd=work, capture_output=True, text=True, check=False, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    return {task["task"]["name"]: task["hosts"]["host_a"] for play in report["plays"] for task in play["tasks"]}


@pytest.fixture(scope="module", params=[[], ["--check"]], ids=["run", "check-mode"])
def results(request, tmp_path_factory) -> dict:
    return run_playbook(tmp_path_factory, *request.param)


def test_passing_checks_pass_and_change_nothing(results):
    result = results["Everything passes"]
    assert not result.get("failed") and not result["changed"]
    assert result["checked"] == 2 and result["failures"] == []


def test_every_failure_is_reported_with_its_own_message_in_order(results):
    result = results["Several checks fail"]
    assert result["failed"] and not result["changed"]
    assert result["failures"] == [
        {"check": "Check the port", "msg": "port: 70000 is not a port"},
        {"check": "Check the administrators", "item": "Bad Name",
         "msg": 'admins: "Bad Name" needs a lower-case name and a key (1 keys)'},
        {"check": "Check the administrators", "item": "juma", "msg": 'admins: "juma" needs a lower-case name and a key (0 keys)'},
        {"check": "Check a value nobody set",
         "msg": "could not be judged: Error while evaluating conditional: 'nobody_set' is undefined"},
    ]
    assert result["msg"].splitlines() == [f"{failure['check']}: {failure['msg']}" for failure in result["failures"]]


def test_a_loop_variable_of_its_own(results):
    result = results["A custom loop variable"]
    assert result["failures"] == [{"check": "Check the groups", "item": "bad group", "msg": 'groups: "bad group" is not a group name'}]


def test_an_empty_item_is_named_as_the_failing_item(results):
    result = results["A loop with an empty item"]
    assert result["failures"] == [{"check": "Check the ports", "item": None, "msg": "a port is missing"}]


def test_what_the_first_pass_cannot_pass_is_judged_one_condition_at_a_time(results):
    result = results["Control characters"]
    assert [(failure["check"], failure.get("item"), failure["msg"]) for failure in result["failures"]] == [
        ("Check for control characters", None, 'banner: "authorised use only.\\na second line" holds a control character'),
        ("Check each line for control characters", "a bell\x07", 'banner_lines: "a bell\\u0007" holds a control character'),
    ]
    result = results["A backslash escape"]
    assert result["failures"] == [{"check": "Check the release for digits", "msg": 'release: "release 42" holds a digit'}]
    result = results["Checks the first pass must not let through"]
    assert result["failed"] and result["checked"] == 4
    assert [(failure["check"], failure.get("item"), failure["msg"].split(":")[0]) for failure in result["failures"]] == [
        ("Check a condition that is not a boolean", None, "could not be judged"),
        ("Check behind a condition that is not a boolean", None, "could not be judged"),
        ("Check the second condition after the first held", None, "port"),
    ]
    result = results["An item that cannot be judged"]
    assert [(failure["check"], failure["msg"].split(":")[0]) for failure in result["failures"]] == [
        ("Check an item without the attribute", "could not be judged")]


def test_a_malformed_check_is_refused_naming_the_key(results):
    result = results["A check without its message"]
    assert result["failed"]
    assert "check 'Check something': missing fail_msg; unknown fail_mesage" in result["msg"]


def role_preflights() -> list[tuple[str, dict]]:
    found = []
    for path in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            if "chajipoa.platform.preflight" in task:
                found.extend((f"{path.relative_to(ROOT)}: {check.get('name')}", check)
                             for check in task["chajipoa.platform.preflight"]["checks"])
    return found


ROLE_CHECKS = role_preflights()


@pytest.mark.parametrize(("where", "check"), ROLE_CHECKS, ids=[where for where, check in ROLE_CHECKS])
def test_every_check_of_the_roles_is_well_formed(where, check):
    """The plugin refuses a malformed check only when a run reaches it: a check behind a rarely true
    condition would otherwise wait for the wrong day."""
    assert {"name", "that", "fail_msg"} <= set(check), where
    assert set(check) <= CHECK_KEYS, where
