"""The common role writes its files in one call on a run with nothing to install, in three otherwise
(vars/main.yml _common_files_at_once): exactly one way runs, both write the same list, and the firewall's
rules files come from one definition for the base ruleset and the entry point.

Class of faults: a file added to one way only, a condition that runs both ways or neither, a tag whose
run takes the one call and so writes files the tag never selected."""
from __future__ import annotations

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.template import trust_as_template

from tests.unit.roles import rendering

TASKS = rendering.ROLES / "common" / "tasks"
# Every package the role installs with its defaults: a converged host.
INSTALLED = rendering.render("common", "{{ _common_packages + _common_packages_optional + common_base_packages }}",
                             rendering.role_variables("common"))


def task(path: str, name: str) -> dict:
    [found] = [task for task in yaml.safe_load((TASKS / path).read_text()) if task["name"] == name]
    return found


STAGED = [task("install.yml", "Debian package sources, drop-ins for the packages to come and the security-updates tool"),
          task("configure.yml", "Host configuration (hosts, locales, time, sudo, SSH, kernel, upgrades, the baseline)"),
          task("firewall_base.yml", "Firewall tool, the nftables unit's drop-in, the base ruleset and the openings of the inventory and SSH")]
AT_ONCE = task("configure.yml", "Package sources, host configuration and firewall in one call (nothing to install)")


def variables(run_tags=("all",), skip_tags=(), installed=INSTALLED, **overrides) -> dict:
    lines = [f"ii  {package}" for package in installed]
    return {**rendering.role_variables("common"), "inventory_hostname": "db1.example.org", "ansible_facts": {},
            "ansible_run_tags": list(run_tags), "ansible_skip_tags": list(skip_tags),
            "common_installed_packages": {"rc": 0, "stdout": "\n".join(lines), "stdout_lines": lines}, **overrides}


def render(expression: str, values: dict):
    """A condition or variable name as Ansible reads it, or a task's argument as written ("{{ ... }}")."""
    return rendering.render("common", expression if "{{" in expression else "{{ " + expression + " }}", values)


CASES = {
    "a full run, nothing to install": ({}, True),
    "the tier's tag": ({"run_tags": ["common"]}, True),
    "a full run, a package missing": ({"installed": INSTALLED[1:]}, False),
    "a phase's tag": ({"run_tags": ["common_configure"]}, False),
    "a phase skipped": ({"skip_tags": ["common_firewall"]}, False),
    "the tier's tag and a phase's": ({"run_tags": ["common", "common_install"]}, False),
    "the packages not read": ({"common_installed_packages": None}, False),
}


@pytest.mark.parametrize("case", CASES)
def test_exactly_one_way_writes_the_files(case):
    overrides, at_once = CASES[case]
    values = variables(**overrides)
    assert render(AT_ONCE["when"], values) is at_once
    assert [render(staged["when"], values) for staged in STAGED] == [not at_once] * len(STAGED)


@pytest.mark.parametrize("firewall", [True, False])
def test_the_one_call_writes_what_the_three_write_in_their_order(firewall):
    values = variables(common_firewall_enabled=firewall)
    files = [task["chajipoa.platform.files"]["files"] for task in STAGED]
    staged = render(files[0], values) + render(files[1], values) + (render(files[2], values) if firewall else [])
    assert render(AT_ONCE["chajipoa.platform.files"]["files"], values) == staged
    assert ("/etc/nftables.d/ssh.nft" in [entry["dest"] for entry in staged]) is firewall


def test_the_paths_changed_are_those_of_whichever_calls_ran():
    skipped = {"skipped": True, "changed": False}
    values = variables(__common_files=skipped, __common_sources={"changed_paths": ["/etc/apt/sources.list"]},
                       __common_configuration={"changed_paths": ["/etc/hosts"]}, __common_firewall_base={"changed_paths": []})
    assert render("_common_changed_paths", values) == ["/etc/apt/sources.list", "/etc/hosts"]
    values = variables(__common_files={"changed_paths": ["/etc/hosts"]}, __common_sources=skipped)
    assert render("_common_changed_paths", values) == ["/etc/hosts"]


def rules_files(values: dict) -> dict[str, dict]:
    return {entry["dest"]: entry for entry in render("_common_firewall_service_files", values)}


def test_the_base_ruleset_writes_the_inventorys_openings_and_sshs():
    files = rules_files(variables(common_firewall_inbound=[{"name": "web", "ports": [443], "sources": ["10.0.0.0/8"]}],
                                  common_ssh_port=2222))
    assert list(files) == ["/etc/nftables.d/inventory.nft", "/etc/nftables.d/ssh.nft"]
    assert files["/etc/nftables.d/inventory.nft"]["template_vars"] == {
        "_common_firewall_rules": [{"name": "web", "proto": "tcp", "ports": [443], "ipv4": ["10.0.0.0/8"], "ipv6": []}]}
    assert files["/etc/nftables.d/ssh.nft"]["template_vars"]["_common_firewall_rules"][0]["ports"] == [2222]
    assert files["/etc/nftables.d/ssh.nft"]["validate"] == "/usr/local/sbin/chajipoa-firewall check /etc/nftables.d/ssh.nft %s"
    # No openings: the file goes.
    assert rules_files(variables())["/etc/nftables.d/inventory.nft"] == {
        "dest": "/etc/nftables.d/inventory.nft", "state": "absent", "notify": ["Reload nftables"]}


def test_the_entry_point_writes_its_callers_file_alone():
    [entry_point] = yaml.safe_load((TASKS / "firewall.yml").read_text())
    openings = [trust_as_template(opening) for opening in entry_point["vars"]["_common_firewall_openings"]]
    values = variables(_common_firewall_openings=openings, common_firewall_service="probe",
                       common_firewall_inbound=[{"name": "probe", "ports": [8081]}], common_ssh_sources=["not checked here"])
    files = render(entry_point["chajipoa.platform.files"]["files"], values)
    assert [entry["dest"] for entry in files] == ["/etc/nftables.d/probe.nft"]


@pytest.mark.parametrize(("overrides", "named"), [
    ({"common_ssh_sources": ["10.0.0.0/33"]}, "common_ssh_port/common_ssh_sources rule 'ssh'"),
    ({"common_firewall_inbound": [{"name": "web", "ports": [70000]}]}, "common_firewall_inbound rule 'web'"),
])
def test_a_faulty_opening_is_refused_naming_its_variable(overrides, named):
    with pytest.raises(AnsibleError, match=named):
        render("_common_firewall_service_files", variables(**overrides))
