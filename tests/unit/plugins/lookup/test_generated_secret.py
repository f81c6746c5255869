"""The generated_secret lookup through Ansible's lookup loader, and its first use from many processes at once."""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import stat

import pytest
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import lookup_loader

from ansible_collections.chajipoa.platform.plugins.lookup.generated_secret import secret


def lookup(*terms, **options):
    loader = DataLoader()
    return lookup_loader.get("chajipoa.platform.generated_secret", loader=loader, templar=None).run(list(terms), {}, **options)


def test_a_secret_is_made_on_first_use_and_read_afterwards(tmp_path):
    path = tmp_path / "credentials" / "postgres_app_password.txt"
    first = lookup(str(path))
    assert re.fullmatch(r"[A-Za-z0-9]{32}", first[0])
    assert path.read_text() == first[0] + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert lookup(str(path)) == first
    # Only the secret is left in the directory: no lock, no temporary file.
    assert os.listdir(path.parent) == [path.name]


def test_length_and_alphabet_shape_a_new_secret_only(tmp_path):
    hexadecimal, = lookup(str(tmp_path / "key.txt"), length=64, alphabet="hex")
    assert re.fullmatch(r"[0-9a-f]{64}", hexadecimal)
    assert lookup(str(tmp_path / "key.txt"), length=8) == [hexadecimal]


def test_a_file_of_ansible_builtin_password_reads_as_its_secret(tmp_path):
    (tmp_path / "redis_app_password.txt").write_text("madeByThePasswordLookup\n")
    assert lookup(str(tmp_path / "redis_app_password.txt")) == ["madeByThePasswordLookup"]


def test_several_paths_give_their_secrets_in_order(tmp_path):
    (tmp_path / "a.txt").write_text("first\n")
    (tmp_path / "c.txt").write_text("third\n")
    assert lookup(str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), str(tmp_path / "c.txt"))[::2] == ["first", "third"]


def test_a_length_below_one_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(AnsibleLookupError, match="length must be at least 1, got 0"):
        lookup(str(tmp_path / "none.txt"), length=0)
    assert not (tmp_path / "none.txt").exists()


def test_a_lock_left_by_ansible_builtin_password_is_not_waited_on(tmp_path):
    path = tmp_path / "app_jwt_secret.txt"
    path.write_text("existing\n")
    # Where ansible.builtin.password puts its lock for this file: it sleeps while the lock exists.
    (tmp_path / f"{hashlib.sha1(str(path).encode()).hexdigest()}.ansible_lockfile").write_text("")
    assert secret(str(path), 32, "abc") == "existing"


def _first_use(barrier, path, queue):
    barrier.wait()
    queue.put(secret(path, 32, "abcdefghijklmnopqrstuvwxyz"))


def test_processes_using_a_new_secret_at_once_all_get_the_one_written(tmp_path):
    path = str(tmp_path / "credentials" / "mongodb_keyfile.txt")
    processes = 16
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_first_use, args=(barrier, path, queue)) for _number in range(processes)]
    for worker in workers:
        worker.start()
    got = [queue.get(timeout=60) for _worker in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    with open(path, encoding="utf-8") as file:
        written = file.read()
    assert set(got) == {written.rstrip("\n")} and len(written) == 33
    assert os.listdir(os.path.dirname(path)) == ["mongodb_keyfile.txt"]
