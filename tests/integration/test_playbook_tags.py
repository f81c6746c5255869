"""A tier's tag reaches every task of its tier: `ansible-playbook playbooks/site.yml --tags <tier>`
runs the role entry points the tier's playbook calls, not only the call. An include_role without
`apply: tags` leaves the included tasks untagged, so a tagged run would skip them all; these plays
import the entry points instead. Read from `--list-tasks` (no host is contacted)."""
from __future__ import annotations

import json
import re
import sys

import pytest
import yaml

from tests.conftest import ROOT, load_yaml, run_playbook

_PLAY = re.compile(r"^  play #\d+ \([^)]*\): (?P<name>.*?)\tTAGS: ")
_TASK = re.compile(r"^      (?P<name>.*?)\tTAGS: ")


def listed_tasks(tags: str) -> dict[str, list[str]]:
    """Play name to the names of the tasks a run of site.yml with `--tags tags` would run, the
    role's prefix removed (plays of the same name, such as each tier's live colour play, merged)."""
    run = run_playbook("site.yml", extra=["--list-tasks", "--tags", tags])
    assert run.returncode == 0, run.stdout + run.stderr
    plays: dict[str, list[str]] = {}
    play = None
    for line in run.stdout.splitlines():
        if match := _PLAY.match(line):
            play = plays.setdefault(match["name"], [])
        elif (match := _TASK.match(line)) and play is not None:
            play.append(match["name"].split(" : ", 1)[-1])
    return plays


def entry_point_tasks(role: str, entry_point: str) -> list[str]:
    """The names of an entry point's own tasks, those inside its blocks too (those of its task-file
    imports are not read)."""
    def names(tasks: list[dict]) -> list[str]:
        found = []
        for task in tasks:
            if "block" in task:
                found += names(task["block"] + task.get("rescue", []) + task.get("always", []))
            elif "ansible.builtin.import_tasks" not in task:
                found.append(task["name"])
        return found
    return names(load_yaml(ROOT / "roles" / role / "tasks" / f"{entry_point}.yml"))


@pytest.mark.parametrize(
    ("tag", "play", "role", "entry_point"),
    [
        ("monitoring", "Exporters", "monitoring", "exporters"),
    ],
)
def test_a_tiers_tag_reaches_the_entry_points_it_calls(tag, play, role, entry_point):
    listed = listed_tasks(tag)[play]
    missing = [name for name in entry_point_tasks(role, entry_point) if name not in listed]
    assert missing == [], f"--tags {tag} skips these tasks of {role}'s {entry_point}: {missing}"


@pytest.mark.parametrize(("tags", "play"), [
    ("edge", "Edge"),
    ("edge_configure", "Edge"),
    ("monitoring", "Prometheus, Alertmanager and the probes"),
    ("monitoring_configure", "Prometheus, Alertmanager and the probes"),
])
def test_every_app_hosts_live_colour_is_read_whatever_the_tags(tags, play):
    """The upstreams and scrape targets name every app host's live colour: the delegated read
    (playbooks/tasks/live-colours.yml) runs under any tag, its included tasks too (apply: tags)."""
    listed = listed_tasks(tags)[play]
    assert "Facts of the peers outside this run" in listed and "Read the live colour of every app host" in listed, listed
    [read] = [task for task in load_yaml(ROOT / "playbooks/tasks/live-colours.yml") if "ansible.builtin.include_role" in task]
    assert read["ansible.builtin.include_role"]["apply"]["tags"] == ["always"]


def test_the_exporters_stop_on_a_host_outside_the_node_groups_whatever_the_tags():
    """A run of one phase (--tags monitoring_configure) must not configure exporters on a host the
    role ends the play for."""
    listed = listed_tasks("monitoring_configure")["Exporters"]
    assert listed and listed[:2] == [
        "Validating arguments against arg spec 'exporters' - The exporters of a host's groups, on its private address",
        "Nothing to export on a host outside monitoring_node_groups",
    ], listed


@pytest.mark.parametrize(("node_groups", "continuing"), [
    (["redis", "postgres"], {"direct", "nested"}),
    (["ungrouped", "postgres_child", "no_such_group"], {"nested", "ungrouped_host"}),
    (["all"], {"direct", "nested", "outside", "ungrouped_host"}),
    ([], set()),
])
def test_the_exporters_end_the_play_for_exactly_the_hosts_outside_the_node_groups(tmp_path, node_groups, continuing):
    """Through a child group, the implicit groups ungrouped and all, a group the inventory lacks;
    under a tag that selects none of the role's tasks, as a run of another tier does."""
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "hosts": {"ungrouped_host": {}},
        "children": {
            "redis": {"hosts": {"direct": {}}},
            "postgres": {"children": {"postgres_child": {"hosts": {"nested": {}}}}},
            "elsewhere": {"hosts": {"outside": {}}},
        }}}))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "name": "Exporters", "hosts": "all", "gather_facts": True, "gather_subset": ["min"],
        "tasks": [
            {"name": "Exporters", "ansible.builtin.import_role": {"name": "chajipoa.platform.monitoring", "tasks_from": "exporters"}},
            {"name": "Past the exporters", "ansible.builtin.debug": {"msg": "continuing"}, "tags": ["always"]},
        ]}]))
    run = run_playbook(tmp_path / "play.yml", tmp_path / "inventory.yml",
                       extra=["--tags", "no_such_tag", "-e", json.dumps({"monitoring_node_groups": node_groups})])
    assert run.returncode == 0, run.stdout + run.stderr
    past = set(re.findall(r"^ok: \[(\w+)\] => \{\n    \"msg\": \"continuing\"", run.stdout, re.MULTILINE))
    assert past == continuing, run.stdout
