#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: files
short_description: Render and compare many files, directories and removals on a host in one call
description:
  - Brings a list of files (rendered from the role's templates, copied from its files, or given as
    content), directories and paths to remove to their wanted content, owner, group and mode, in the
    order given, with one module call on the host for the whole list.
  - Written because a no-op run's time is its number of module calls times the cost of one
    (docs/performance.md), and the bundled modules handle one path a call.
    M(ansible.builtin.template) and M(ansible.builtin.copy) even make two calls for an unchanged file
    (a C(stat), then M(ansible.builtin.file) for the attributes), so a role's ten configuration files
    cost twenty calls on every run, and this module one.
  - Templates are rendered on the controller by the action plugin, as M(ansible.builtin.template)
    renders them (the role's C(templates/) search path, C(ansible_managed), C(#jinja2:) overrides); the
    rendered bytes travel with the call and the host compares them with the file it has. Only a
    differing file is written, to a temporary file beside it that gets its owner and mode and passes
    O(files[].validate) before it is renamed over the old one, so a reader never sees a partial file and
    a refused file is never installed.
  - The call applies all of its entries or none. When an entry fails (its validation refuses it, its
    directory is missing), the entries before it that changed are put back as they were (content, mode,
    owner; a created directory removed, a removed file or link restored, a removed directory tree comes
    back empty) and the task fails. Ansible notifies no handler from a failed task, so a change left in
    place would be found unchanged by the next run and never reach its service.
  - Each entry may name handlers in O(files[].notify); the task notifies exactly the handlers of the
    entries that changed. A task-level C(notify) cannot be combined with them (Ansible would overwrite
    the per-entry notifications).
  - Contents travel in the module's arguments, which are not logged; the task still needs
    C(no_log) where a rendered file holds a secret, and such an entry should set O(files[].diff=false).
version_added: 0.7.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
options:
  files:
    description: The paths, handled in this order (a directory before the files in it).
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description: Absolute path on the host.
        type: path
        required: true
      state:
        description: V(file) (content from O(files[].template), O(files[].src) or O(files[].content)),
          V(directory) (created with its parents when missing, each C(0755) whatever the umask, then given
          O(files[].mode)), V(link) (a symbolic link to O(files[].target),
          replacing whatever file or link was there) or V(absent) (a file, link or tree removed).
        type: str
        choices: [file, directory, link, absent]
        default: file
      target:
        description: What a V(link) points at. It must exist, so that a misspelt target fails the call.
        type: path
      template:
        description: A Jinja2 template in the role's C(templates/) (or the playbook's), rendered on the
          controller. Resolved by the action plugin.
        type: str
      template_vars:
        description: Variables this entry's O(files[].template) sees over the task's, as the template
          lookup's C(template_vars), so that one template renders several files of a list, each from
          values of its own. Only with O(files[].template). Resolved by the action plugin.
        type: dict
      src:
        description: A file in the role's C(files/), sent as it is. Resolved by the action plugin.
        type: str
      content:
        description: The file's content as text. Turned into O(files[].content_base64) by the action plugin.
        type: str
      content_base64:
        description: The file's bytes, base64-encoded. The action plugin fills it from O(files[].template),
          O(files[].src) or O(files[].content); playbooks do not set it.
        type: str
      owner:
        description: Owner of the file or directory. When not given, a replaced file keeps its owner.
        type: str
      group:
        description: Group of the file or directory. When not given, a replaced file keeps its group.
        type: str
      mode:
        description: Mode, as M(ansible.builtin.file) takes it (a quoted octal string or symbolic). When not
          given, a replaced file keeps its mode and a new file gets C(0666) less the umask.
        type: raw
      validate:
        description: A command run on the candidate file before it replaces the old one; C(%s) stands
          for the candidate's path. A non-zero exit fails the module and leaves the old file in place.
        type: str
      unsafe_writes:
        description: When the rename cannot replace the file (a file bind-mounted by a container
          engine, such as C(/etc/hosts)), write the content in place instead of failing.
        type: bool
        default: false
      diff:
        description: Show the file's content in C(--diff) output. V(false) for a file holding a secret.
        type: bool
        default: true
      notify:
        description: Handlers to notify when this entry changed. Resolved by the action plugin.
        type: list
        elements: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Every content is sent on every run; this is meant for configuration files and programs, not data.
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.copy
  - module: ansible.builtin.file
"""

EXAMPLES = r"""
- name: Configuration of the service
  chajipoa.platform.files:
    files:
      - dest: /etc/example
        state: directory
        owner: root
        group: root
        mode: "0755"
      - dest: /etc/example/example.conf
        template: etc/example/example.conf.j2
        owner: root
        group: example
        mode: "0640"
        validate: example --check-config %s
        notify: [Restart example]
      - dest: /usr/local/sbin/example-tool
        src: usr/local/sbin/example-tool
        owner: root
        group: root
        mode: "0755"
      - dest: /etc/example/retired.conf
        state: absent

- name: One template, a file for each site
  chajipoa.platform.files:
    files:
      - dest: /etc/example/sites/public.conf
        template: etc/example/site.conf.j2
        template_vars: {site: public, port: 443}
        notify: [Reload example]
      - dest: /etc/example/sites/admin.conf
        template: etc/example/site.conf.j2
        template_vars: {site: admin, port: 8443}
        notify: [Reload example]

- name: Credentials of the service
  chajipoa.platform.files:
    files:
      - dest: /etc/example/credentials
        content: "password={{ example_password }}\n"
        owner: root
        group: example
        mode: "0640"
        diff: false
  no_log: true
"""

RETURN = r"""
files:
  description: Each entry's outcome, in the order given.
  returned: always
  type: list
  elements: dict
  sample: [{"dest": "/etc/example/example.conf", "state": "file", "changed": true}]
changed_paths:
  description: The paths that changed (or would change, in check mode).
  returned: always
  type: list
  elements: str
  sample: ["/etc/example/example.conf"]
"""

import errno
import os
import shlex

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.chajipoa.platform.plugins.module_utils import file_set

ENTRY_OPTIONS = dict(
    dest=dict(type="path", required=True),
    state=dict(type="str", choices=list(file_set.STATES), default="file"),
    target=dict(type="path"),
    template=dict(type="str"),
    template_vars=dict(type="dict"),
    src=dict(type="str"),
    content=dict(type="str", no_log=True),
    content_base64=dict(type="str", no_log=True),
    owner=dict(type="str"),
    group=dict(type="str"),
    mode=dict(type="raw"),
    validate=dict(type="str"),
    unsafe_writes=dict(type="bool", default=False),
    diff=dict(type="bool", default=True),
    notify=dict(type="list", elements="str"),
)


class FileSet:
    def __init__(self, module: AnsibleModule):
        self.module = module
        self.diffs: list[dict] = []
        self.outcomes: list[dict] = []
        # How to put back what this call changed, should a later entry fail: the task then fails
        # and notifies no handler, so a change left in place would never reach its service.
        self.undo: list = []

    def attributes(self, entry: dict, path: str) -> dict:
        return self.module.load_file_common_arguments(
            dict(path=path, owner=entry["owner"], group=entry["group"], mode=entry["mode"]))

    def set_attributes(self, entry: dict, path: str, shown: bool = True) -> bool:
        diff = dict(before=dict(path=path), after=dict(path=path))
        changed = self.module.set_fs_attributes_if_different(self.attributes(entry, path), False, diff)
        if changed and shown:
            self.diffs.append(diff)
        return changed

    def fail(self, entry: dict, message: str, **details) -> None:
        undone = self.changed_paths
        for restore in reversed(self.undo):
            restore()
        self.module.fail_json(msg=f"{entry['dest']}: {message}" + (f"; undone: {', '.join(undone)}" if undone else ""),
                              changed_paths=[], **details)

    def remember(self, path: str, content: bytes | None = None) -> None:
        """Before a change of path: what it holds now, to put back (a directory tree is not kept)."""
        snapshot = file_set.snapshot(path, content)
        self.undo.append(lambda: file_set.restore(path, snapshot))

    def content_diff(self, entry: dict, before: bytes | None, after: bytes) -> None:
        shown = entry["diff"]
        self.diffs.append(dict(
            before_header=entry["dest"], after_header=entry["dest"],
            before=file_set.text_for_diff(before) if shown else "(content not shown)\n",
            after=file_set.text_for_diff(after) if shown else "(content not shown, changed)\n"))

    def state_diff(self, entry: dict, before: str, after: str) -> None:
        self.diffs.append(dict(before=dict(path=entry["dest"], state=before), after=dict(path=entry["dest"], state=after)))

    def file(self, entry: dict) -> bool:
        dest, wanted = entry["dest"], file_set.wanted_bytes(entry)
        before = file_set.current_bytes(dest)
        if not self.module.check_mode:
            self.remember(dest, before)
        if before == wanted:
            return self.set_attributes(entry, dest)
        self.content_diff(entry, before, wanted)
        if self.module.check_mode:
            return True
        directory = os.path.dirname(dest)
        if not os.path.isdir(directory):
            self.fail(entry, f"the directory {directory} does not exist")
        candidate = file_set.write_candidate(directory, wanted)
        try:
            file_set.inherit_attributes(candidate, dest, mode=entry["mode"] is None, owner=entry["owner"] is None,
                                        group=entry["group"] is None)
            # Owner and mode before the rename: a file holding a secret is never readable by others.
            self.set_attributes(entry, candidate, shown=False)
            self.validate(entry, candidate)
            self.replace(entry, candidate)
        finally:
            if os.path.exists(candidate):
                os.unlink(candidate)
        self.set_attributes(entry, dest)
        return True

    def validate(self, entry: dict, candidate: str) -> None:
        if not entry["validate"]:
            return
        command = entry["validate"].replace("%s", shlex.quote(candidate))
        rc, out, err = self.module.run_command(command, use_unsafe_shell=True)
        if rc != 0:
            self.fail(entry, f"validation refused the new content: {command}", rc=rc, stdout=out, stderr=err)

    def replace(self, entry: dict, candidate: str) -> None:
        dest = entry["dest"]
        try:
            os.replace(candidate, dest)
        except OSError as error:
            if not entry["unsafe_writes"] or error.errno not in (errno.EBUSY, errno.EXDEV):
                self.fail(entry, f"cannot replace the file: {error}")
            with open(candidate, "rb") as source, open(dest, "wb") as target:
                target.write(source.read())
                target.flush()
                os.fsync(target.fileno())

    def directory(self, entry: dict) -> bool:
        dest = entry["dest"]
        if os.path.isdir(dest):
            if not self.module.check_mode:
                self.remember(dest)
            return self.set_attributes(entry, dest)
        if file_set.exists(dest):
            self.fail(entry, "exists and is not a directory")
        self.state_diff(entry, "absent", "directory")
        if self.module.check_mode:
            return True
        for created in file_set.missing_directories(dest):
            self.remember(created)
            # 0755 whatever the login's umask (the host baseline gives logins 027): a parent others
            # cannot search would lock the services out of what the roles put beneath it.
            os.mkdir(created)
            os.chmod(created, 0o755)
        self.set_attributes(entry, dest)
        return True

    def link(self, entry: dict) -> bool:
        dest, target = entry["dest"], entry["target"]
        if os.path.islink(dest) and os.readlink(dest) == target:
            return False
        if not os.path.exists(target if os.path.isabs(target) else os.path.join(os.path.dirname(dest), target)):
            self.fail(entry, f"the link's target {target} does not exist")
        if os.path.isdir(dest) and not os.path.islink(dest):
            self.fail(entry, "is a directory, not replaced by a link")
        self.state_diff(entry, os.readlink(dest) if os.path.islink(dest) else "file" if file_set.exists(dest) else "absent", f"link to {target}")
        if not self.module.check_mode:
            self.remember(dest)
            file_set.link_to(dest, target)
        return True

    def absent(self, entry: dict) -> bool:
        dest = entry["dest"]
        if not file_set.exists(dest):
            return False
        self.state_diff(entry, "present", "absent")
        if not self.module.check_mode:
            self.remember(dest)
            file_set.remove(dest)
        return True

    def run(self) -> None:
        entries = self.module.params["files"]
        for entry in entries:
            problem = file_set.entry_problem(entry)
            if problem:
                self.module.fail_json(msg=problem)
        for entry in entries:
            try:
                changed = getattr(self, entry["state"])(entry)
            except (OSError, ValueError) as error:
                self.fail(entry, str(error))
            self.outcomes.append(dict(dest=entry["dest"], state=entry["state"], changed=changed))
        result = dict(changed=bool(self.changed_paths), files=self.outcomes, changed_paths=self.changed_paths)
        if self.module._diff:
            result["diff"] = self.diffs
        self.module.exit_json(**result)

    @property
    def changed_paths(self) -> list[str]:
        return [outcome["dest"] for outcome in self.outcomes if outcome["changed"]]


def main():
    module = AnsibleModule(
        argument_spec=dict(files=dict(type="list", elements="dict", required=True, options=ENTRY_OPTIONS)),
        supports_check_mode=True,
    )
    FileSet(module).run()


if __name__ == "__main__":
    main()
