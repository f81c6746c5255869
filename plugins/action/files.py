# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Controller side of chajipoa.platform.files: renders the templates and reads the role's files
here, sends every content with one call of the module, and turns the entries that changed into
handler notifications."""
from __future__ import annotations

import base64
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible._internal._templating import _template_vars
from ansible_collections.chajipoa.platform.plugins.module_utils import file_set

SOURCES = ("template", "src", "content")
CONTROLLER_ONLY = (*SOURCES, "notify", "template_vars")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        entries = self._task.args.get("files")
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise AnsibleActionFail("files must be a list of dictionaries")
        misordered = file_set.order_problem(entries)
        if misordered:
            raise AnsibleActionFail(misordered)
        if self._task.notify and any(entry.get("notify") for entry in entries):
            raise AnsibleActionFail("notify per entry and notify on the task cannot be combined: Ansible keeps only the task's")
        sent = [self.entry_for_host(entry, task_vars) for entry in entries]
        try:
            result.update(self._execute_module(module_name="chajipoa.platform.files", module_args=dict(files=sent),
                                               task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        # By position, not by dest: the module expands a dest (~, $HOME) before reporting it.
        outcomes = result.get("files") if isinstance(result.get("files"), list) else []
        notify = [handler for entry, outcome in zip(entries, outcomes) if isinstance(outcome, dict) and outcome.get("changed")
                  for handler in self.handlers(entry)]
        if notify:
            # The key Ansible itself sets from a task's notify; the strategy notifies these handlers
            # because the result is changed.
            result["_ansible_notify"] = list(dict.fromkeys(notify))
        return result

    @staticmethod
    def handlers(entry: dict) -> list[str]:
        notify = entry.get("notify") or []
        return [notify] if isinstance(notify, str) else list(notify)

    def entry_for_host(self, entry: dict, task_vars: dict) -> dict:
        dest = entry.get("dest")
        given = [source for source in SOURCES if entry.get(source) is not None]
        state = entry.get("state", "file")
        if state == "file" and len(given) != 1:
            raise AnsibleActionFail(f"{dest}: a file needs exactly one of {', '.join(SOURCES)}, got {given or 'none'}")
        if state != "file" and given:
            raise AnsibleActionFail(f"{dest}: state {state} takes none of {', '.join(SOURCES)}")
        if "template_vars" in entry and entry.get("template") is None:
            raise AnsibleActionFail(f"{dest}: template_vars is for a template, and there is none")
        if not isinstance(entry.get("template_vars", {}), dict):
            raise AnsibleActionFail(f"{dest}: template_vars must be a dictionary")
        sent = {key: value for key, value in entry.items() if key not in CONTROLLER_ONLY}
        if given:
            sent["content_base64"] = base64.b64encode(self.content(entry, given[0], task_vars)).decode("ascii")
        return sent

    def content(self, entry: dict, source: str, task_vars: dict) -> bytes:
        if source == "content":
            return to_bytes(entry["content"], errors="surrogate_or_strict")
        if source == "src":
            # Decrypted as ansible.builtin.copy decrypts: a vault-encrypted key arrives in clear.
            real = self._loader.get_real_file(self._find_needle("files", entry["src"]), decrypt=True)
            try:
                with open(real, "rb") as handle:
                    return handle.read()
            finally:
                self._loader.cleanup_tmp_file(real)
        return to_bytes(self.render(entry["template"], entry["dest"], task_vars, entry.get("template_vars") or {}),
                        errors="surrogate_or_strict")

    def render(self, template: str, dest: str, task_vars: dict, template_vars: dict) -> str:
        """As ansible.builtin.template renders: the same search path, template variables and defaults;
        the entry's template_vars over them all, as the template lookup's."""
        path = self._find_needle("templates", template)
        searchpath = [*task_vars.get("ansible_search_path", []), self._loader._basedir, os.path.dirname(path)]
        searchpath = [candidate for directory in searchpath for candidate in (os.path.join(directory, "templates"), directory)]
        variables = task_vars.copy()
        variables.update(_template_vars.generate_ansible_template_vars(
            path=template, fullpath=path, dest_path=dest, include_ansible_managed="ansible_managed" not in variables))
        variables.update(template_vars)
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=variables)
        rendered = templar.template(trust_as_template(self._loader.get_text_file_contents(path)),
                                    escape_backslashes=False, overrides=dict(trim_blocks=True, lstrip_blocks=False,
                                                                             newline_sequence="\n"))
        return rendered or ""
