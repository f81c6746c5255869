"""Unit tests of the missing_packages filter on package_facts results shaped as the module returns them."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.missing_packages import FilterModule

missing_packages = FilterModule().filters()["missing_packages"]

FACTS = {"changed": False, "ansible_facts": {"packages": {
    "nginx": [{"name": "nginx", "version": "1.22.1-9", "arch": "amd64", "source": "apt"}],
    "libc6": [{"name": "libc6", "version": "2.36-9", "arch": "amd64", "source": "apt"}],
}}}


def test_installed_packages_are_not_missing():
    assert missing_packages(["nginx", "libc6"], FACTS) == []


def test_missing_ones_are_listed_in_order():
    assert missing_packages(["redis-server", "nginx", "chrony"], FACTS) == ["redis-server", "chrony"]


def test_an_architecture_qualified_name_counts_as_its_package():
    assert missing_packages(["libc6:amd64"], FACTS) == []


@pytest.mark.parametrize("spec", ["nginx=1.22.1-9", "nginx*", "/tmp/nginx.deb", "nginx>=1"])
def test_versions_wildcards_and_paths_are_left_to_apt(spec):
    assert missing_packages([spec], FACTS) == [spec]


@pytest.mark.parametrize("facts", [None, {}, {"skipped": True, "changed": False}, {"failed": True, "msg": "x"}])
def test_without_this_runs_facts_everything_is_missing(facts):
    assert missing_packages(["nginx", "libc6"], facts) == ["nginx", "libc6"]


def test_a_package_listed_without_versions_is_not_installed():
    facts = {"ansible_facts": {"packages": {"nginx": []}}}
    assert missing_packages(["nginx"], facts) == ["nginx"]


@pytest.mark.parametrize("wanted", ["nginx", None, {"nginx": 1}])
def test_the_input_must_be_a_list(wanted):
    with pytest.raises(AnsibleFilterError, match="list of package names"):
        missing_packages(wanted, FACTS)


def test_something_else_than_package_facts_is_refused():
    with pytest.raises(AnsibleFilterError, match="not a package_facts result"):
        missing_packages(["nginx"], {"stat": {"exists": True}})
