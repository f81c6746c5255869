"""Unit tests of the missing_secrets filter (plain dicts stand in for a host's variables)."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError, AnsibleUndefinedVariable

from ansible_collections.chajipoa.platform.plugins.filter.missing_secrets import FilterModule

missing_secrets = FilterModule().filters()["missing_secrets"]

CATALOGUE = [
    {"name": "postgres_app_password", "groups": ["postgres", "app"]},
    {"name": "redis_admin_password", "groups": ["redis"]},
    {"name": "app_jwt_secret", "groups": ["app"]},
]


class UnrenderedVault(dict):
    """A host's variables where one secret's template names an absent vault_ variable, as hostvars raise it."""

    def __getitem__(self, name):
        if name == "app_jwt_secret":
            raise AnsibleUndefinedVariable("'vault_app_jwt_secret' is undefined")
        return super().__getitem__(name)


@pytest.mark.parametrize(
    ("value", "missing"),
    [
        ("s3cr3t", False),
        ("  padded but present  ", False),
        ("", True),
        ("   \t ", True),
        (None, True),
        ({"nested": "value"}, True),
        (["a", "b"], True),
        (12345, True),
        (True, True),
    ],
)
def test_a_secret_must_be_a_non_blank_string(value, missing):
    assert missing_secrets(["postgres_app_password"], {"postgres_app_password": value}) == (["postgres_app_password"] if missing else [])


def test_absent_secrets_are_listed_in_input_order():
    assert missing_secrets(["b_password", "a_password"], {}) == ["b_password", "a_password"]


def test_catalogue_entries_count_only_for_the_hosts_groups():
    assert missing_secrets(CATALOGUE, {}, ["redis"]) == ["redis_admin_password"]
    assert missing_secrets(CATALOGUE, {}, ["app", "monitoring"]) == ["postgres_app_password", "app_jwt_secret"]
    assert missing_secrets(CATALOGUE, {}, ["edge"]) == []


def test_without_groups_every_entry_counts():
    assert missing_secrets(CATALOGUE, {"redis_admin_password": "x"}) == ["postgres_app_password", "app_jwt_secret"]


def test_a_template_over_an_absent_vault_variable_counts_as_missing():
    variables = UnrenderedVault(postgres_app_password="x", app_jwt_secret="{{ vault_app_jwt_secret }}")
    assert missing_secrets(CATALOGUE, variables, ["app"]) == ["app_jwt_secret"]


@pytest.mark.parametrize(
    ("secrets", "variables", "groups"),
    [
        ("postgres_app_password", {}, None),
        ([{"groups": ["app"]}], {}, None),
        ([42], {}, None),
        (["x"], ["not", "a", "mapping"], None),
        (["x"], {}, "app"),
    ],
)
def test_bad_input_is_refused(secrets, variables, groups):
    with pytest.raises(AnsibleFilterError, match="missing_secrets:"):
        missing_secrets(secrets, variables, groups)
