"""Unit tests of the missing_packages filter on dpkg-query reads shaped as ansible.builtin.command returns them."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.missing_packages import FilterModule

missing_packages = FilterModule().filters()["missing_packages"]


def read(*lines: str) -> dict:
    return {"changed": False, "rc": 0, "stdout": "\n".join(lines), "stdout_lines": list(lines)}


READ = read("ii  nginx", "ii  libc6", "ii  chrony")


def test_installed_packages_are_not_missing():
    assert missing_packages(["nginx", "libc6"], READ) == []


def test_missing_ones_are_listed_in_order():
    assert missing_packages(["redis-server", "nginx", "sudo"], READ) == ["redis-server", "sudo"]


def test_an_architecture_qualified_name_counts_as_its_package():
    assert missing_packages(["libc6:amd64"], READ) == []


# dpkg's abbreviated status: wanted state, package state, error flag (a space when none).
@pytest.mark.parametrize("status, installed", [
    ("ii", True),    # installed
    ("it", True),    # installed, triggers pending
    ("iW", True),    # installed, awaiting another package's triggers
    ("hi", True),    # held, installed
    ("rc", False),   # removed, its configuration files left
    ("un", False),   # known, not installed
    ("iU", False),   # unpacked, never configured
    ("iF", False),   # configuration failed half-way
    ("iH", False),   # installation stopped half-way
    ("iHR", False),  # the same, reinstallation required
])
def test_only_an_installed_status_counts(status, installed):
    assert missing_packages(["nginx"], read(f"{status} nginx")) == ([] if installed else ["nginx"])


@pytest.mark.parametrize("spec", ["nginx=1.22.1-9", "nginx*", "/tmp/nginx.deb", "nginx>=1"])
def test_versions_wildcards_and_paths_are_left_to_apt(spec):
    assert missing_packages([spec], READ) == [spec]


@pytest.mark.parametrize("result", [None, {}, {"skipped": True, "changed": False}, {"failed": True, "msg": "x"},
                                    {"rc": 2, "stdout_lines": []}])
def test_without_this_runs_read_everything_is_missing(result):
    assert missing_packages(["nginx", "libc6"], result) == ["nginx", "libc6"]


@pytest.mark.parametrize("wanted", ["nginx", None, {"nginx": 1}])
def test_the_input_must_be_a_list(wanted):
    with pytest.raises(AnsibleFilterError, match="list of package names"):
        missing_packages(wanted, READ)


@pytest.mark.parametrize("result, message", [
    ({"stat": {"exists": True}}, "not the result of dpkg-query"),
    ({"ansible_facts": {"packages": {"nginx": []}}}, "not the result of dpkg-query"),
    (read("nginx"), "not a line of dpkg-query's status and package"),
    (read("ii nginx 1.22"), "not a line of dpkg-query's status and package"),
])
def test_something_else_than_a_dpkg_query_read_is_refused(result, message):
    with pytest.raises(AnsibleFilterError, match=message):
        missing_packages(["nginx"], result)
