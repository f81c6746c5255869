"""chajipoa.platform.files against a lab container (chajipoa-lab:bookworm), through ansible-playbook and the
community.docker.docker connection, from a small role of its own (templates/, files/, handlers): files and
directories created with their owner, group and mode and then unchanged; templates rendered byte for byte as
ansible.builtin.template renders them; only the handlers of changed entries notified; validation, drift, check
mode and diff, removal, a vault-encrypted src, and the refusals.

Needs the Docker engine and the lab image (`make integration`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import lab_container
from tests.lab_container import docker
from tests.conftest import ROOT

CONTAINER = "chajipoa-files-test-1"
BASE = "/srv/chajipoa-files-test"
ROLE = "lab_files"
VAULT_PASSWORD = "files-test-vault-password\n"
SECRET = "api-key=0123456789abcdef\n"

PLAIN_TEMPLATE = """# {{ ansible_managed }}
# from {{ template_path }}
{% include 'part.j2' %}
{% for name in names %}
server {{ name }}
{% endfor %}
{% if flag %}
flag on
{% endif %}
    {% if flag %}indented{% endif %}

last line {{ names | length }}
"""
BRACKETS_TEMPLATE = """#jinja2: variable_start_string:"[[", variable_end_string:"]]", trim_blocks: False
value=[[ names | join(",") ]]
literal={{ not_a_variable }}
{% for name in names %}
[[ name ]]
{% endfor %}
"""
HANDLERS = [{"name": name, "ansible.builtin.file": {"path": f"{BASE}/markers/{name}", "state": "touch"}}
            for name in ("H1", "H2")]


def sh(command: str) -> str:
    done = docker("exec", CONTAINER, "sh", "-c", command)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cat(path: str) -> str:
    return sh(f"cat {path}")


def stat(path: str) -> str:
    return sh(f"stat -c '%U %G %a' {path}").strip()


def listing(path: str) -> list[str]:
    return sorted(sh(f"ls -A {path}").split())


def marker(name: str) -> bool:
    return docker("exec", CONTAINER, "test", "-e", f"{BASE}/markers/{name}").returncode == 0


def clear_markers() -> None:
    sh(f"rm -f {BASE}/markers/*")


@pytest.fixture(scope="module")
def lab_host():
    lab_container.start(CONTAINER)
    try:
        yield CONTAINER
    finally:
        lab_container.remove(CONTAINER)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A playbook directory with the role lab_files: templates, files (one vault-encrypted), handlers H1 and H2."""
    path = tmp_path_factory.mktemp("files-project")
    role = path / "roles" / ROLE
    for sub in ("tasks", "handlers", "defaults", "templates/etc", "files/bin"):
        (role / sub).mkdir(parents=True)
    (role / "defaults/main.yml").write_text(yaml.safe_dump({"names": ["a", "b", "c"], "flag": True}))
    (role / "handlers/main.yml").write_text(yaml.safe_dump(HANDLERS, sort_keys=False))
    (role / "templates/etc/plain.conf.j2").write_text(PLAIN_TEMPLATE)
    (role / "templates/brackets.conf.j2").write_text(BRACKETS_TEMPLATE)
    (role / "templates/part.j2").write_text("included {{ names[0] }}\n")
    (role / "files/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (role / "files/secret.txt").write_text(SECRET)
    (path / "vault-password").write_text(VAULT_PASSWORD)
    encrypted = subprocess.run([str(Path(sys.executable).parent / "ansible-vault"), "encrypt", "--vault-password-file",
                                str(path / "vault-password"), str(role / "files/secret.txt")],
                               capture_output=True, text=True, check=False)
    assert encrypted.returncode == 0, encrypted.stderr
    assert (role / "files/secret.txt").read_text().startswith("$ANSIBLE_VAULT;")
    (path / "site.yml").write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "roles": [ROLE]}]))
    return path


class Run:
    def __init__(self, done: subprocess.CompletedProcess):
        self.rc, self.stdout = done.returncode, done.stdout
        try:
            output = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"ansible-playbook gave no JSON (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        # Named "lab_files : <name>": the tasks are the role's.
        self.tasks = {task["task"]["name"].split(" : ")[-1]: task["hosts"][CONTAINER] for task in output["plays"][0]["tasks"]}

    def __getitem__(self, name: str) -> dict:
        assert name in self.tasks, self.stdout[-3000:]
        return self.tasks[name]


@pytest.fixture
def play(lab_host, project):
    """Runs the role with the given tasks; returns each task's result on the host, by task name."""
    sh(f"mkdir -p {BASE}/markers && rm -f {BASE}/markers/*")

    def run(*tasks: dict, options: tuple[str, ...] = ()) -> Run:
        (project / "roles" / ROLE / "tasks" / "main.yml").write_text(yaml.safe_dump(list(tasks), sort_keys=False))
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_CACHE_PLUGIN="memory")
        done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", f"{lab_host},",
                               "-c", "community.docker.docker", "-e", "ansible_python_interpreter=/usr/bin/python3",
                               "--vault-password-file", str(project / "vault-password"), *options,
                               str(project / "site.yml")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        return Run(done)

    return run


def files(*entries: dict, name: str = "files", **task) -> dict:
    return {"name": name, "chajipoa.platform.files": {"files": list(entries)}, **task}


def test_first_run_creates_with_owner_group_mode_then_second_run_is_unchanged(play):
    base = f"{BASE}/create"
    task = files(
        {"dest": f"{base}/app", "state": "directory", "owner": "root", "group": "nogroup", "mode": "0755"},
        {"dest": f"{base}/app/conf.d", "state": "directory", "owner": "daemon", "group": "daemon", "mode": "0750"},
        {"dest": f"{base}/app/conf.d/given.conf", "content": "given\n", "owner": "daemon", "group": "root", "mode": "0640"},
        {"dest": f"{base}/app/tool", "src": "bin/tool", "owner": "root", "group": "root", "mode": "0755"},
        {"dest": f"{base}/app/plain.conf", "template": "etc/plain.conf.j2", "owner": "nobody", "group": "nogroup",
         "mode": "u=rw,g=r,o="},
    )
    first = play(task)["files"]
    assert first["changed"] is True, first
    assert [entry["changed"] for entry in first["files"]] == [True] * 5
    assert first["changed_paths"] == [entry["dest"] for entry in task["chajipoa.platform.files"]["files"]]
    assert stat(f"{base}/app") == "root nogroup 755"
    assert stat(f"{base}/app/conf.d") == "daemon daemon 750"
    assert stat(f"{base}/app/conf.d/given.conf") == "daemon root 640"
    assert stat(f"{base}/app/tool") == "root root 755"
    assert stat(f"{base}/app/plain.conf") == "nobody nogroup 640"
    assert cat(f"{base}/app/conf.d/given.conf") == "given\n"
    assert cat(f"{base}/app/tool") == "#!/bin/sh\necho tool\n"
    assert "server a\nserver b\nserver c\n" in cat(f"{base}/app/plain.conf")
    assert listing(f"{base}/app") == ["conf.d", "plain.conf", "tool"]

    second = play(task)["files"]
    assert second["changed"] is False, second
    assert second["changed_paths"] == []
    assert [entry["changed"] for entry in second["files"]] == [False] * 5


def test_templates_render_as_ansible_builtin_template_renders_them(play):
    base = f"{BASE}/templates"
    result = play(
        files({"dest": base, "state": "directory"}, {"dest": f"{base}/plain.conf", "template": "etc/plain.conf.j2"},
              {"dest": f"{base}/brackets.conf", "template": "brackets.conf.j2"}),
        {"name": "builtin plain", "ansible.builtin.template": {"src": "etc/plain.conf.j2", "dest": f"{base}/plain.builtin"}},
        {"name": "builtin brackets", "ansible.builtin.template": {"src": "brackets.conf.j2", "dest": f"{base}/brackets.builtin"}},
    )
    assert result["files"]["changed"] is True, result["files"]
    plain, brackets = cat(f"{base}/plain.conf"), cat(f"{base}/brackets.conf")
    assert plain == cat(f"{base}/plain.builtin")
    assert brackets == cat(f"{base}/brackets.builtin")
    # trim_blocks: no newline after a block tag (the include's included), the template's last newline kept.
    assert plain == ("# Ansible managed\n# from etc/plain.conf.j2\nincluded aserver a\nserver b\nserver c\nflag on\n"
                     "    indented\nlast line 3\n")
    # The header's trim_blocks: False keeps the newline after each block tag.
    assert brackets == 'value=a,b,c\nliteral={{ not_a_variable }}\n\na\n\nb\n\nc\n'


def test_only_the_handlers_of_changed_entries_run(play):
    base = f"{BASE}/handlers"
    task = files({"dest": base, "state": "directory"},
                 {"dest": f"{base}/one", "content": "one\n", "notify": ["H1"]},
                 {"dest": f"{base}/two", "content": "two\n", "notify": "H2"})
    play(task)
    assert marker("H1") and marker("H2")

    clear_markers()
    unchanged = play(task)
    assert unchanged["files"]["changed"] is False
    assert not marker("H1") and not marker("H2")

    sh(f"echo changed-on-the-host > {base}/two")
    rerun = play(task)
    assert rerun["files"]["changed_paths"] == [f"{base}/two"]
    assert not marker("H1"), "H1 ran for an unchanged entry"
    assert marker("H2"), "H2 did not run for its changed entry"
    assert cat(f"{base}/two") == "two\n"


def test_a_dest_under_home_notifies_its_handler(play):
    # The module expands ~ (dest is a path); the handler still belongs to the entry.
    sh("rm -f /root/chajipoa-files-test-home")
    result = play(files({"dest": "~/chajipoa-files-test-home", "content": "home\n", "notify": ["H1"]}))
    assert result["files"]["changed"] is True, result["files"]
    assert cat("/root/chajipoa-files-test-home") == "home\n"
    assert marker("H1") and not marker("H2")


def test_task_notify_with_entry_notify_is_refused(play):
    base = f"{BASE}/notify-both"
    result = play(files({"dest": base, "state": "directory", "notify": ["H2"]}, notify=["H1"]))
    assert result["files"].get("failed") is True, result["files"]
    assert "notify per entry and notify on the task cannot be combined" in result["files"]["msg"]
    assert docker("exec", CONTAINER, "test", "-e", base).returncode != 0
    assert not marker("H1") and not marker("H2")


def test_validate_refusing_leaves_the_old_file_and_no_candidate(play):
    base = f"{BASE}/validate"
    entry = {"dest": f"{base}/conf", "content": "ok\n", "mode": "0640", "validate": "grep -q ok %s", "notify": ["H1"]}
    accepted = play(files({"dest": base, "state": "directory"}, entry))
    assert accepted["files"]["changed"] is True, accepted["files"]
    assert cat(f"{base}/conf") == "ok\n"
    clear_markers()

    refused = play(files({"dest": base, "state": "directory"}, {**entry, "content": "bad\n"}))
    assert refused["files"].get("failed") is True, refused["files"]
    assert f"{base}/conf: validation refused the new content: grep -q ok " in refused["files"]["msg"]
    assert refused["files"]["rc"] == 1
    assert cat(f"{base}/conf") == "ok\n"
    assert stat(f"{base}/conf") == "root root 640"
    assert listing(base) == ["conf"]
    assert not marker("H1")


def test_a_refused_entry_undoes_the_changes_before_it(play):
    """A failed task notifies no handler: changes left in place would never reach their service."""
    base = f"{BASE}/all-or-none"
    sh(f"rm -rf {base} && mkdir -p {base}/kept && echo old > {base}/kept/changed && chmod 0644 {base}/kept/changed"
       f" && echo gone > {base}/kept/removed && ln -s changed {base}/kept/link")
    refused = play(files(
        {"dest": f"{base}/kept/changed", "content": "new\n", "mode": "0600", "notify": ["H1"]},
        {"dest": f"{base}/kept/removed", "state": "absent"},
        {"dest": f"{base}/kept/link", "state": "absent"},
        {"dest": f"{base}/created/deeper", "state": "directory"},
        {"dest": f"{base}/created/deeper/new", "content": "new\n"},
        {"dest": f"{base}/kept/refused", "content": "bad\n", "validate": "grep -q ok %s", "notify": ["H2"]}))
    assert refused["files"].get("failed") is True, refused["files"]
    assert f"{base}/kept/refused: validation refused the new content" in refused["files"]["msg"]
    assert f"undone: {base}/kept/changed, {base}/kept/removed, {base}/kept/link, {base}/created/deeper" in refused["files"]["msg"]
    assert cat(f"{base}/kept/changed") == "old\n" and stat(f"{base}/kept/changed") == "root root 644"
    assert cat(f"{base}/kept/removed") == "gone\n"
    assert sh(f"readlink {base}/kept/link").strip() == "changed"
    assert listing(base) == ["kept"]
    assert listing(f"{base}/kept") == ["changed", "link", "removed"]
    assert not marker("H1") and not marker("H2")


def test_mode_and_owner_drift_alone_is_repaired(play):
    base = f"{BASE}/drift"
    task = files({"dest": base, "state": "directory", "mode": "0755"},
                 {"dest": f"{base}/conf", "content": "drift\n", "owner": "daemon", "group": "daemon", "mode": "0600"},
                 {"dest": f"{base}/other", "content": "other\n", "mode": "0644"})
    play(task)
    sh(f"chmod 0666 {base}/conf && chown root:root {base}/conf")
    repaired = play(task)["files"]
    assert repaired["changed"] is True, repaired
    assert repaired["changed_paths"] == [f"{base}/conf"]
    assert stat(f"{base}/conf") == "daemon daemon 600"
    assert cat(f"{base}/conf") == "drift\n"

    sh(f"chmod 0700 {base}")
    assert play(task)["files"]["changed_paths"] == [base]
    assert stat(base) == "root root 755"


def test_check_mode_changes_nothing_and_diff_hides_secret_entries(play):
    base = f"{BASE}/check"
    play(files({"dest": base, "state": "directory"}, {"dest": f"{base}/conf", "content": "one\n", "mode": "0644"},
               {"dest": f"{base}/secret", "content": "secret-one\n", "mode": "0600", "diff": False}))
    changed = files({"dest": base, "state": "directory"}, {"dest": f"{base}/conf", "content": "two\n", "mode": "0644"},
                    {"dest": f"{base}/secret", "content": "secret-two\n", "mode": "0600", "diff": False},
                    {"dest": f"{base}/new", "state": "directory"}, {"dest": f"{base}/conf-gone", "state": "absent"})

    checked = play(changed, options=("--check",))["files"]
    assert checked["changed"] is True, checked
    assert checked["changed_paths"] == [f"{base}/conf", f"{base}/secret", f"{base}/new"]
    assert cat(f"{base}/conf") == "one\n"
    assert cat(f"{base}/secret") == "secret-one\n"
    assert listing(base) == ["conf", "secret"]

    diffed = play(changed, options=("--check", "--diff"))["files"]
    assert diffed["changed"] is True
    conf, secret, new = diffed["diff"]
    assert (conf["before_header"], conf["before"], conf["after"]) == (f"{base}/conf", "one\n", "two\n")
    assert secret["before_header"] == f"{base}/secret"
    assert "secret" not in secret["before"] + secret["after"]
    assert new == {"before": {"path": f"{base}/new", "state": "absent"}, "after": {"path": f"{base}/new", "state": "directory"}}
    assert cat(f"{base}/conf") == "one\n"
    assert cat(f"{base}/secret") == "secret-one\n"


def test_absent_removes_a_file_and_a_tree_then_is_unchanged(play):
    base = f"{BASE}/absent"
    sh(f"mkdir -p {base}/tree/sub && echo x > {base}/tree/sub/file && echo y > {base}/file && echo z > {base}/kept")
    task = files({"dest": f"{base}/file", "state": "absent"}, {"dest": f"{base}/tree", "state": "absent"},
                 {"dest": f"{base}/never-there", "state": "absent"})
    removed = play(task)["files"]
    assert removed["changed"] is True, removed
    assert [entry["changed"] for entry in removed["files"]] == [True, True, False]
    assert listing(base) == ["kept"]
    again = play(task)["files"]
    assert again["changed"] is False, again


def test_a_link_points_at_its_target_and_a_missing_target_fails(play):
    base = f"{BASE}/links"
    sh(f"rm -rf {base} && mkdir -p {base}/zones/Africa && touch {base}/zones/Africa/Lusaka {base}/zones/UTC && echo file > {base}/localtime")
    task = files({"dest": f"{base}/localtime", "state": "link", "target": "zones/Africa/Lusaka", "notify": ["H1"]})
    assert play(task)["files"]["changed"] is True
    assert sh(f"readlink {base}/localtime").strip() == "zones/Africa/Lusaka"
    assert marker("H1")
    clear_markers()
    assert play(task)["files"]["changed"] is False
    assert not marker("H1")
    missing = play(files({"dest": f"{base}/localtime", "state": "link", "target": "zones/Atlantis"}))
    assert missing["files"].get("failed") is True
    assert missing["files"]["msg"] == f"{base}/localtime: the link's target zones/Atlantis does not exist"
    assert sh(f"readlink {base}/localtime").strip() == "zones/Africa/Lusaka"


def test_a_vault_encrypted_src_lands_decrypted(play):
    base = f"{BASE}/vault"
    result = play(files({"dest": base, "state": "directory"},
                        {"dest": f"{base}/secret.txt", "src": "secret.txt", "mode": "0600", "diff": False}, no_log=True))
    assert result["files"]["changed"] is True
    assert cat(f"{base}/secret.txt") == SECRET
    assert stat(f"{base}/secret.txt") == "root root 600"


def test_a_file_in_a_missing_directory_fails_naming_the_directory(play):
    base = f"{BASE}/missing"
    result = play(files({"dest": f"{base}/nosuch/dir/file", "content": "x\n"}))
    assert result["files"].get("failed") is True, result["files"]
    assert result["files"]["msg"] == f"{base}/nosuch/dir/file: the directory {base}/nosuch/dir does not exist"


def test_a_file_without_mode_or_owner_keeps_those_of_the_file_it_replaces(play):
    base = f"{BASE}/keep"
    sh(f"mkdir -p {base} && echo old > {base}/conf && chown daemon:nogroup {base}/conf && chmod 0644 {base}/conf")
    replaced = play(files({"dest": f"{base}/conf", "content": "new\n"},
                          {"dest": f"{base}/created", "content": "created\n"}))["files"]
    assert replaced["changed"] is True, replaced
    assert cat(f"{base}/conf") == "new\n"
    assert stat(f"{base}/conf") == "daemon nogroup 644"
    # A new file gets the mode ansible.builtin.copy gives it: 0666 less the umask.
    assert stat(f"{base}/created") == "root root 644"


def test_new_directories_and_their_parents_are_searchable_whatever_the_login_umask(play):
    # The host baseline gives logins umask 027 (pam_umask), so a module run over SSH has it: parents
    # created 0750 would lock out the services beneath them (the backup's metrics under
    # /var/lib/prometheus did). A shell that starts with that umask stands in for such a login.
    base = f"{BASE}/umask"
    sh(f"rm -rf {base} && printf '#!/bin/sh\\numask 027\\nexec /bin/sh \"$@\"\\n' > /usr/local/bin/sh-umask027"
       " && chmod 0755 /usr/local/bin/sh-umask027")
    task = files({"dest": f"{base}/parent/child", "state": "directory"},
                 {"dest": f"{base}/other/private", "state": "directory", "mode": "0700"},
                 {"dest": f"{base}/other/private/file", "content": "x\n"})
    task["vars"] = {"ansible_shell_executable": "/usr/local/bin/sh-umask027"}
    created = play(task)["files"]
    assert created["changed"] is True, created
    assert [stat(f"{base}/{path}") for path in ("", "parent", "parent/child", "other", "other/private")] == \
        ["root root 755"] * 4 + ["root root 700"]
    # A new file keeps ansible.builtin.copy's rule (0666 less the umask).
    assert stat(f"{base}/other/private/file") == "root root 640"
    assert play(task)["files"]["changed"] is False


def test_unsafe_writes_replaces_a_bind_mounted_file_in_place(play):
    hosts = cat("/etc/hosts")
    wanted = hosts + "192.0.2.10 chajipoa-files-test\n"
    refused = play(files({"dest": "/etc/hosts", "content": wanted}))["files"]
    assert refused.get("failed") is True, refused
    assert refused["msg"].startswith("/etc/hosts: cannot replace the file")
    assert cat("/etc/hosts") == hosts
    written = play(files({"dest": "/etc/hosts", "content": wanted, "unsafe_writes": True, "mode": "0644"}))["files"]
    assert written["changed"] is True, written
    assert cat("/etc/hosts") == wanted
    assert not [name for name in listing("/etc") if name.startswith(".chajipoa-files-")]
