"""Every benchmark's write-up has its place in docs/performance.md, and a missing place stops the bench.

A rewrite of the docs once dropped four benchmarks' sections; the benches then measured for an hour and
wrote nothing, silently.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "performance.md"
spec = importlib.util.spec_from_file_location("benchlib", ROOT / "bench" / "benchlib.py")
benchlib = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchlib)


def sections_written_by_benches() -> set[str]:
    sections = set()
    for script in (ROOT / "bench").glob("*.py"):
        for call in re.findall(r'record\(\s*("[^"]+"(?:\s+if\s+[^,]+?\s+else\s+"[^"]+")?)', script.read_text()):
            sections.update(re.findall(r'"([^"]+)"', call))
    return sections


def test_the_benches_are_found():
    assert {"noop-site", "noop-site-limit", "scale", "backups", "module-call"} <= sections_written_by_benches()


@pytest.mark.parametrize("section", sorted(sections_written_by_benches()))
def test_each_section_a_bench_writes_is_in_the_docs_once(section):
    text = DOC.read_text()
    assert text.count(f"<!-- bench:{section} -->") == 1, section
    assert text.count(f"<!-- /bench:{section} -->") == 1, section
    assert text.index(f"<!-- bench:{section} -->") < text.index(f"<!-- /bench:{section} -->")


def test_record_replaces_the_section_and_keeps_the_rest(tmp_path, monkeypatch):
    doc = tmp_path / "performance.md"
    doc.write_text("before\n<!-- bench:x -->\nold\n<!-- /bench:x -->\nafter\n")
    monkeypatch.setenv("CHAJIPOA_BENCH_DOC", str(doc))
    benchlib.record("x", "new")
    assert doc.read_text() == "before\n<!-- bench:x -->\nnew\n<!-- /bench:x -->\nafter\n"


def test_record_without_its_section_stops_and_names_it(tmp_path, monkeypatch, capsys):
    doc = tmp_path / "performance.md"
    doc.write_text("no markers here\n")
    monkeypatch.setenv("CHAJIPOA_BENCH_DOC", str(doc))
    with pytest.raises(SystemExit, match="bench:missing"):
        benchlib.record("missing", "figures")
    assert doc.read_text() == "no markers here\n"
    assert "figures" in capsys.readouterr().out


def test_calls_per_host_names_each_host_a_run_called_and_the_other_runs_count_where_it_differs():
    calls = {"db1": {"calls": 24}, "db2": {"calls": 20}, "edge1": {"calls": 0}, "mon1": {"calls": 0}}
    assert benchlib.calls_per_host(calls) == "db1 24, db2 20"
    assert benchlib.calls_per_host(calls, {"db1": {"calls": 25}, "mon1": {"calls": 3}}) == "db1 24 (25), db2 20, mon1 0 (3)"


def test_containers_cpu_is_read_from_cgroup_v1_or_summed_over_v2_scopes(tmp_path):
    v1 = tmp_path / "v1" / "sys/fs/cgroup/cpuacct/docker"
    v1.mkdir(parents=True)
    (v1 / "cpuacct.usage").write_text("2500000000\n")
    assert benchlib.containers_cpu_seconds(tmp_path / "v1") == 2.5
    v2 = tmp_path / "v2" / "sys/fs/cgroup/system.slice"
    for name, usec in (("docker-a.scope", 1_000_000), ("docker-b.scope", 500_000)):
        (v2 / name).mkdir(parents=True)
        (v2 / name / "cpu.stat").write_text(f"usage_usec {usec}\nuser_usec 1\nsystem_usec 2\n")
    assert benchlib.containers_cpu_seconds(tmp_path / "v2") == 1.5
    assert benchlib.containers_cpu_seconds(tmp_path / "nothing") is None


def test_scale_gives_another_commits_roles_its_own_settings_and_the_same_secrets(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    scale_spec = importlib.util.spec_from_file_location("scale", ROOT / "bench" / "scale.py")
    scale = importlib.util.module_from_spec(scale_spec)
    scale_spec.loader.exec_module(scale)
    other = tmp_path / "other-commit" / "inventories" / "development"
    (other / "group_vars" / "all").mkdir(parents=True)
    (other / "group_vars" / "all" / "lab.yml").write_text("lab_network: theirs\n")
    (other / "group_vars" / "all" / "secrets.yml").write_text("redis_app_password: their lookup\n")
    ours = scale.inventory(tmp_path / "ours", 2)
    theirs = scale.inventory(tmp_path / "theirs", 2, other, ours / "credentials")
    assert (theirs / "group_vars/all/secrets.yml").read_text() == "redis_app_password: their lookup\n"
    assert "lab_network: chajipoa-scale" in (theirs / "group_vars/all/lab.yml").read_text()
    assert (theirs / "hosts.yml").read_text() == (ours / "hosts.yml").read_text()
    (ours / "credentials").mkdir()
    (ours / "credentials" / "redis_app_password.txt").write_text("shared\n")
    assert (theirs / "credentials" / "redis_app_password.txt").read_text() == "shared\n"
    assert not (ours / "credentials").is_symlink()
