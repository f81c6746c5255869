# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: releases_to_prune
short_description: The release directories an app host no longer needs
version_added: 0.9.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
description:
  - Keeps the O(kept) releases installed last that no deploy marked failed, and every release in
    O(keep) (what the colours run, the release being installed); gives the rest, oldest first.
  - A release's age is the time its install mark (O(installed_mark), written once its dependencies
    were installed, never touched again) was written, not its directory's modification time, which
    changes whenever something is written into it (a deploy's failure mark, a migration's mark).
  - A release with a failure mark (O(failed_mark)) never counts among the kept ones, since neither a
    deploy nor a rollback returns to it; one without an install mark is an install that never
    finished. Both are removed unless O(keep) holds them.
  - Written because no bundled filter orders directories by a file inside them. Fails on an O(kept)
    that is not a whole number >= 0.
positional: markers, kept, keep
options:
  _input:
    description: The release directories, as M(ansible.builtin.find) returns them (dicts with C(path)) or paths.
    type: list
    elements: raw
    required: true
  markers:
    description:
      - The marks inside them, as M(ansible.builtin.find) returns them (C(path) and C(mtime)); marks
        outside the release directories are ignored.
    type: list
    elements: dict
    required: true
  kept:
    description: How many installed, unfailed releases stay, newest first.
    type: int
    required: true
  keep:
    description: Release directories that stay whatever their age and marks.
    type: list
    elements: str
    default: []
  installed_mark:
    description: File name of the install mark.
    type: str
    default: .chajipoa-npm-ci
  failed_mark:
    description: File name of the failure mark.
    type: str
    default: .chajipoa-failed
"""

EXAMPLES = r"""
- name: Remove releases beyond app_releases_kept
  ansible.builtin.file:
    path: "{{ item }}"
    state: absent
  loop: >-
    {{ releases.files | chajipoa.platform.releases_to_prune(marks.files, app_releases_kept,
       [_app_release_dir] + colour_links) }}
"""

RETURN = r"""
_value:
  description: Paths of the release directories to remove, oldest install first (never-finished installs before all).
  type: list
  elements: str
  sample: [/opt/chajipoa-api/releases/1.0.1-3f2a9c0d1e4b, /opt/chajipoa-api/releases/1.1.1-0a9e8d7c6b5f]
"""

import os.path
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def _path(entry: Any) -> str:
    return os.path.normpath(entry["path"] if isinstance(entry, Mapping) else str(entry))


def releases_to_prune(releases: Any, markers: Any, kept: Any, keep: Any = (), installed_mark: str = ".chajipoa-npm-ci",
                      failed_mark: str = ".chajipoa-failed") -> list[str]:
    if isinstance(kept, bool) or not isinstance(kept, (int, str)) or not str(kept).isdigit():
        raise AnsibleFilterError(f"releases_to_prune: kept must be a whole number >= 0, got {kept!r}")
    directories = [_path(release) for release in releases]
    installed: dict[str, float] = {}
    failed: set[str] = set()
    for marker in markers:
        directory, name = os.path.split(_path(marker))
        if name == installed_mark:
            installed[directory] = float(marker["mtime"])
        elif name == failed_mark:
            failed.add(directory)
    usable = sorted((directory for directory in directories if directory in installed and directory not in failed),
                    key=installed.__getitem__, reverse=True)
    staying = set(usable[:int(kept)]) | {_path(path) for path in keep}
    return sorted((directory for directory in directories if directory not in staying),
                  key=lambda directory: installed.get(directory, float("-inf")))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"releases_to_prune": releases_to_prune}
