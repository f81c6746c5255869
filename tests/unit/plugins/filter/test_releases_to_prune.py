"""Unit tests of the releases_to_prune filter, on find results as the app role's prune reads them."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.filter.releases_to_prune import FilterModule

releases_to_prune = FilterModule().filters()["releases_to_prune"]

ROOT = "/opt/api/releases"


def directories(*names: str) -> list[dict]:
    # A directory's own mtime is what the filter must not go by: newest for the first named.
    return [{"path": f"{ROOT}/{name}", "mtime": 2000.0 - number} for number, name in enumerate(names)]


def installed(**times: float) -> list[dict]:
    return [{"path": f"{ROOT}/{name}/.chajipoa-npm-ci", "mtime": time} for name, time in times.items()]


def failed(*names: str) -> list[dict]:
    return [{"path": f"{ROOT}/{name}/.chajipoa-failed", "mtime": 3000.0} for name in names]


def paths(*names: str) -> list[str]:
    return [f"{ROOT}/{name}" for name in names]


def test_the_releases_installed_last_stay_whatever_the_directories_times():
    # 1.0.0's directory changed last (a mark written into it), but it was installed first.
    found = directories("1.0.0", "1.0.1", "1.0.2", "1.0.3")
    marks = installed(**{"1.0.0": 100, "1.0.1": 200, "1.0.2": 300, "1.0.3": 400})
    assert releases_to_prune(found, marks, 2) == paths("1.0.0", "1.0.1")


def test_failed_releases_never_count_among_the_kept_and_go_unless_a_colour_runs_them():
    found = directories("good1", "good2", "crash", "slow")
    marks = installed(good1=100, good2=200, crash=300, slow=400) + failed("crash", "slow")
    # Kept 2: both good releases, not the two newest, which failed; slow stays while a colour runs it.
    assert releases_to_prune(found, marks, 2, paths("slow")) == paths("crash")
    assert releases_to_prune(found, marks, 1) == paths("good1", "crash", "slow")


def test_an_install_that_never_finished_goes_first_unless_it_is_the_one_installing_now():
    found = directories("half", "now", "1.0.0")
    marks = installed(**{"1.0.0": 100})
    assert releases_to_prune(found, marks, 5, paths("now")) == paths("half")


def test_what_keep_names_stays_however_old_and_kept_zero_keeps_only_that():
    found = directories("old", "mid", "new")
    marks = installed(old=100, mid=200, new=300)
    assert releases_to_prune(found, marks, 0, [f"{ROOT}/old/"]) == paths("mid", "new")
    assert releases_to_prune(found, marks, "1", paths("old")) == paths("mid")


def test_plain_paths_are_taken_and_marks_outside_the_releases_ignored():
    marks = installed(a=100, b=200) + [{"path": f"{ROOT}/a/node_modules/x/.chajipoa-npm-ci", "mtime": 999.0},
                                       {"path": "/elsewhere/b/.chajipoa-failed", "mtime": 1.0}]
    assert releases_to_prune(paths("a", "b"), marks, 1) == paths("a")


def test_marks_of_other_names_are_taken_as_given():
    marks = [{"path": f"{ROOT}/a/INSTALLED", "mtime": 200.0}, {"path": f"{ROOT}/b/INSTALLED", "mtime": 100.0},
             {"path": f"{ROOT}/a/.chajipoa-npm-ci", "mtime": 1.0}]
    assert releases_to_prune(paths("a", "b"), marks, 1, installed_mark="INSTALLED") == paths("b")


@pytest.mark.parametrize("kept", [-1, "two", 1.5, None, True])
def test_a_kept_that_is_not_a_whole_number_is_refused(kept):
    with pytest.raises(AnsibleFilterError, match=r"releases_to_prune: kept must be a whole number >= 0, got"):
        releases_to_prune(paths("a"), [], kept)
