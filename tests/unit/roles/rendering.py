"""Render a role's templates and expressions offline, the way Ansible's template action does."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLES = Path(__file__).resolve().parents[3] / "roles"
LOADER = DataLoader()


def role_variables(role: str) -> dict[str, Any]:
    """The role's defaults overlaid with its vars, still untemplated."""
    return {
        **LOADER.load_from_file(str(ROLES / role / "defaults" / "main.yml"), trusted_as_template=True),
        **LOADER.load_from_file(str(ROLES / role / "vars" / "main.yml"), trusted_as_template=True),
    }


def render(role: str, template: str, variables: dict[str, Any]) -> Any:
    """A file under the role's templates/, or an expression when `template` contains '{{'."""
    # role_path as Ansible sets it for a role's tasks.
    templar = Templar(loader=LOADER, variables={"ansible_managed": "Ansible managed", "role_path": str(ROLES / role), **variables})
    if "{{" in template:
        return templar.template(trust_as_template(template))
    # As the template action renders a file: backslashes in the file are Jinja's, not YAML's.
    source = (ROLES / role / "templates" / template).read_text()
    return templar.template(trust_as_template(source), escape_backslashes=False)
