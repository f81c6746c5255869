"""Unit tests of the missing_secrets filter (plain dicts stand in for a host's variables)."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError, AnsibleUndefinedVariable

from ansible_collections.chajipoa.platform.plugins.filter.missing_secrets import FilterModule
from tests.conftest import ROOT, load_yaml

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


# As the catalogue has the payment gateway's credentials: needed where the market names a gateway,
# read from the app role's app_market when the inventory sets it, else from platform_market.
CONDITIONAL = [
    {"name": "app_jwt_secret", "groups": ["app"]},
    {"name": "app_payment_client_secret", "groups": ["app"],
     "needed_if": ["app_market.payment_gateway", "platform_market.payment_gateway"]},
    {"name": "app_sms_api_key", "groups": ["app"], "needed_if": ["app_sms_provider"]},
]


@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        ({}, ["app_jwt_secret"]),
        ({"platform_market": {"country": "TZ"}}, ["app_jwt_secret"]),
        ({"platform_market": {"payment_gateway": ""}}, ["app_jwt_secret"]),
        ({"platform_market": {"payment_gateway": "azampay"}}, ["app_jwt_secret", "app_payment_client_secret"]),
        ({"platform_market": {"payment_gateway": "azampay"}, "app_payment_client_secret": " "},
         ["app_jwt_secret", "app_payment_client_secret"]),
        ({"platform_market": {"payment_gateway": "azampay"}, "app_payment_client_secret": "s"}, ["app_jwt_secret"]),
        # The first path the host defines decides, as the role's default reads it.
        ({"app_market": {"payment_gateway": "dpo"}}, ["app_jwt_secret", "app_payment_client_secret"]),
        ({"app_market": {"country": "ZM"}, "platform_market": {"payment_gateway": "azampay"}}, ["app_jwt_secret"]),
        ({"app_sms_provider": "africastalking"}, ["app_jwt_secret", "app_sms_api_key"]),
        ({"app_sms_provider": ""}, ["app_jwt_secret"]),
    ],
)
def test_a_conditional_secret_is_needed_only_where_its_provider_is_named(variables, missing):
    assert missing_secrets(CONDITIONAL, variables, ["app"]) == missing
    assert missing_secrets(CONDITIONAL, variables, ["redis"]) == []


def test_a_condition_over_a_template_that_cannot_render_counts_as_needed():
    """An unrenderable provider name is not "no provider": the secret stays needed, so the gate speaks."""

    class UnrenderedProvider(dict):
        def __getitem__(self, name):
            if name == "app_sms_provider":
                raise AnsibleUndefinedVariable("'vault_sms' is undefined")
            return super().__getitem__(name)

    assert missing_secrets(CONDITIONAL, UnrenderedProvider(app_sms_provider="x", app_jwt_secret="j"), ["app"]) == ["app_sms_api_key"]


def test_a_template_over_an_absent_vault_variable_counts_as_missing():
    variables = UnrenderedVault(postgres_app_password="x", app_jwt_secret="{{ vault_app_jwt_secret }}")
    assert missing_secrets(CATALOGUE, variables, ["app"]) == ["app_jwt_secret"]


@pytest.mark.parametrize(
    ("secrets", "variables", "groups"),
    [
        ("postgres_app_password", {}, None),
        ([{"groups": ["app"]}], {}, None),
        ([42], {}, None),
        ([{"name": "x", "needed_if": "app_sms_provider"}], {}, None),
        ([{"name": "x", "needed_if": [42]}], {}, None),
        (["x"], ["not", "a", "mapping"], None),
        (["x"], {}, "app"),
    ],
)
def test_bad_input_is_refused(secrets, variables, groups):
    with pytest.raises(AnsibleFilterError, match="missing_secrets:"):
        missing_secrets(secrets, variables, groups)


# The real catalogue's conditional secrets of the monitoring and backup roles: needed where the role
# uses them, so that a run stops in the gate rather than on the host half-way through.
REAL_CATALOGUE = load_yaml(ROOT / "roles/validate_inventory/vars/main.yml")["_validate_inventory_secrets"]


@pytest.mark.parametrize(
    ("groups", "variables", "secret", "needed"),
    [
        # The monitoring role installs Grafana unless monitoring_grafana is false (its default is true).
        (["monitoring"], {}, "monitoring_grafana_admin_password", True),
        (["monitoring"], {"monitoring_grafana": True}, "monitoring_grafana_admin_password", True),
        (["monitoring"], {"monitoring_grafana": False}, "monitoring_grafana_admin_password", False),
        (["app"], {}, "monitoring_grafana_admin_password", False),
        # Alertmanager logs in to the SMTP smarthost where a login is named.
        (["monitoring"], {"monitoring_smtp_auth_username": "apikey"}, "monitoring_smtp_password", True),
        (["monitoring"], {"monitoring_smtp_auth_username": ""}, "monitoring_smtp_password", False),
        (["monitoring"], {}, "monitoring_smtp_password", False),
        # mongodump runs on the backup hosts whose MongoDB backups are on (DocumentDB in production).
        (["backup"], {"backup_mongodb_enabled": True}, "mongodb_backup_password", True),
        (["postgres"], {"backup_mongodb_enabled": True}, "mongodb_backup_password", True),
        (["backup"], {"backup_mongodb_enabled": False}, "mongodb_backup_password", False),
        (["backup"], {}, "mongodb_backup_password", False),
        (["mongodb"], {}, "mongodb_backup_password", True),
    ],
)
def test_the_catalogue_needs_a_roles_conditional_secret_where_the_role_uses_it(groups, variables, secret, needed):
    assert (secret in missing_secrets(REAL_CATALOGUE, variables, groups)) is needed
    assert secret not in missing_secrets(REAL_CATALOGUE, {**variables, secret: "s3cr3t"}, groups)
