"""Sentry's side of a deploy (playbooks/tasks/sentry-release.yml, included by playbooks/deploy.yml)
run by ansible-playbook against the stand-in of tests/sentry_standin.py, which records every call."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.test_health_playbook import ansible_playbook, localhost, task_result
from tests.sentry_standin import SentryStandin

TOKEN = "sntrys_0123456789abcdef-the-secret"
VERSION = "1.0.1-3f9c2a7d1b04"


def play(step: str) -> list[dict]:
    return [{"name": "Sentry", "hosts": "localhost", "gather_facts": False,
             "tasks": [{"name": "Sentry step", "ansible.builtin.include_tasks": str(ROOT / "playbooks" / "tasks" / "sentry-release.yml"),
                        "vars": {"deploy_sentry_step": step}}]}]


@pytest.fixture
def sentry():
    with SentryStandin(token=TOKEN) as running:
        yield running


def run(tmp_path: Path, sentry: SentryStandin, step: str, *extra: str, token: str = TOKEN):
    playbook = tmp_path / f"sentry-{step}.yml"
    playbook.write_text(yaml.safe_dump(play(step)))
    variables = {"deploy_release_version": VERSION, "deploy_sentry_url": sentry.url + "/", "deploy_sentry_org": "chajipoa",
                 "deploy_sentry_projects": ["api", "web"], "deploy_sentry_token": token, "env_name": "staging"}
    return ansible_playbook(playbook, localhost(["app"]), tmp_path, "-e", json.dumps(variables), *extra)


def test_create_then_deploy_is_recorded_with_the_token_and_never_logs_it(tmp_path, sentry):
    created, output = run(tmp_path, sentry, "new")
    assert created.returncode == 0, created.stdout[-3000:]
    assert task_result(output, f"Create the release in Sentry, {VERSION}")["changed"] is True
    deployed, _output = run(tmp_path, sentry, "deployed")
    assert deployed.returncode == 0, deployed.stdout[-3000:]
    assert [(call.method, call.path, call.status) for call in sentry.calls] == [
        ("POST", "/api/0/organizations/chajipoa/releases/", 201),
        ("POST", f"/api/0/organizations/chajipoa/releases/{VERSION}/deploys/", 201)]
    assert all(call.authorization == f"Bearer {TOKEN}" for call in sentry.calls)
    assert sentry.calls[0].body == {"version": VERSION, "projects": ["api", "web"]}
    assert sentry.calls[1].body == {"environment": "staging", "name": VERSION}
    assert TOKEN not in created.stdout + created.stderr + deployed.stdout + deployed.stderr


def test_a_release_created_again_is_accepted_unchanged(tmp_path, sentry):
    run(tmp_path, sentry, "new")
    again, output = run(tmp_path, sentry, "new")
    assert again.returncode == 0 and task_result(output, f"Create the release in Sentry, {VERSION}")["changed"] is False
    assert [call.status for call in sentry.calls] == [201, 208]


def test_a_refused_token_fails_naming_the_status_and_not_the_token(tmp_path, sentry):
    wrong = "sntrys_wrong-token-value"
    refused, output = run(tmp_path, sentry, "new", token=wrong)
    assert refused.returncode != 0
    message = task_result(output, "Check Sentry created the release")["msg"]
    assert message.startswith(f"Cannot create release {VERSION} in Sentry (") and "HTTP 401" in message
    assert wrong not in refused.stdout + refused.stderr and [call.status for call in sentry.calls] == [401]


def test_check_mode_calls_nothing(tmp_path, sentry):
    checked, _output = run(tmp_path, sentry, "new", "--check")
    assert checked.returncode == 0 and sentry.calls == []


def test_missing_settings_are_named(tmp_path, sentry):
    refused, output = run(tmp_path, sentry, "new", "-e", "deploy_sentry_org=")
    assert refused.returncode != 0 and sentry.calls == []
    assert "deploy_sentry_org and deploy_sentry_projects must name" in task_result(output, "Check the Sentry settings")["msg"]
