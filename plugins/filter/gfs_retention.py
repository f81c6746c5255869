# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: gfs_retention
short_description: Plan grandfather-father-son backup retention
version_added: 0.1.0
# The form validate-modules accepts without a GitHub handle; the team's address is in galaxy.yml.
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
description:
  - Splits a list of backups into those a grandfather-father-son (daily/weekly/monthly) policy keeps
    and those it deletes, and says for every kept backup which rules keep it.
  - Written because no bundled collection offers GFS retention planning; C(community.general) and the
    cloud collections can list and delete objects, but not decide which ones to delete.
  - The logic lives in the collection's C(module_utils/gfs_retention.py), which the backup program on
    the database hosts imports too, so that the controller and the hosts decide alike.
  - A backup may satisfy several rules. V(newest) keeps the newest backup of the whole list, always,
    even when every backup is older than every window. V(pre-deploy) keeps the newest O(policy.pre_deploy_keep)
    backups whose reason is V(pre-deploy), whatever their age.
  - V(daily), V(weekly) and V(monthly) consider only backups whose reason is not V(pre-deploy). For every
    UTC calendar day, ISO week (UTC) and UTC calendar month respectively, the newest backup of that
    period is kept if its age (now minus its time) is less than O(policy.daily_days),
    O(policy.weekly_days) and O(policy.monthly_days) days respectively. A backup timed after now counts
    as age 0.
  - Of two backups with the same time, the one with the greater name counts as newer, so the plan does
    not depend on the order of the input.
  - Fails, naming the bad value, on a missing key, a duplicate name, a time without a zone or that does
    not parse, an unknown policy key, or a policy value that is not an integer >= 0.
positional: policy
options:
  _input:
    description:
      - The backups. Every item is a dict with at least the keys C(name) (a non-empty string, unique),
        C(time) (an ISO-8601 string with a zone, such as V(2026-11-23T02:00:00Z) or
        V(2026-11-23T05:00:00+03:00), or a timezone-aware datetime; a naive time is refused) and
        C(reason) (a non-empty string such as V(daily), V(weekly), V(monthly), V(manual), V(pre-deploy)).
      - Other keys, such as C(bytes) or C(key), are carried through unchanged into the result.
    type: list
    elements: dict
    required: true
  policy:
    description:
      - The retention policy. Omitted keys take the defaults of the operator guide. Unknown keys are
        refused, and so are booleans and strings (use the C(int) filter on extra vars).
    type: dict
    default: {}
    suboptions:
      daily_days:
        description: Keep the newest backup of each UTC day younger than this many days.
        type: int
        default: 30
      weekly_days:
        description: Keep the newest backup of each ISO week younger than this many days.
        type: int
        default: 90
      monthly_days:
        description: Keep the newest backup of each UTC month younger than this many days.
        type: int
        default: 365
      pre_deploy_keep:
        description: Keep this many of the newest backups whose reason is V(pre-deploy).
        type: int
        default: 5
      now:
        description:
          - The time ages are measured from, in the same formats as a backup's C(time).
          - Defaults to the current UTC time; set it for a plan that does not change from one run to the next.
        type: raw
"""

EXAMPLES = r"""
- name: Plan retention with the operator guide's policy
  ansible.builtin.set_fact:
    backup_plan: "{{ backup_list | chajipoa.platform.gfs_retention }}"
  vars:
    backup_list:
      - {name: db-20261123T0200Z, time: "2026-11-23T02:00:00Z", reason: daily, bytes: 1048576}
      - {name: db-20261122T1730Z, time: "2026-11-22T20:30:00+03:00", reason: pre-deploy}

- name: Delete what a shorter policy drops
  amazon.aws.s3_object:
    bucket: chajipoa-backups
    object: "{{ item.key }}"
    mode: delobj
  loop: "{{ (backups | chajipoa.platform.gfs_retention({'daily_days': 14, 'pre_deploy_keep': 3}))['delete'] }}"
  loop_control:
    label: "{{ item.name }}"

- name: Plan against a fixed time, for a reviewable plan
  ansible.builtin.debug:
    msg: "{{ backups | chajipoa.platform.gfs_retention({'now': '2026-11-23T03:00:00Z'}) }}"
"""

RETURN = r"""
_value:
  description:
    - The plan, a dict with the lists C(keep) and C(delete), both sorted newest first (by time, then
      name, descending).
    - Each entry is a copy of its input dict whose C(time) is normalised to UTC with a C(Z) suffix, such
      as V(2026-11-22T17:30:00Z).
    - A kept entry also has C(rules), the rules that keep it, in the order V(newest), V(daily), V(weekly),
      V(monthly), V(pre-deploy). An input C(rules) key is replaced on kept entries and dropped from
      deleted ones, so a plan's own output can be planned again.
  type: dict
  contains:
    keep:
      description: The backups to keep.
      type: list
      elements: dict
      sample:
        - {name: db-20261123T0200Z, time: "2026-11-23T02:00:00Z", reason: daily, bytes: 1048576,
           rules: [newest, daily, weekly, monthly]}
        - {name: db-20261122T1730Z, time: "2026-11-22T17:30:00Z", reason: pre-deploy, rules: [pre-deploy]}
    delete:
      description: The backups to delete.
      type: list
      elements: dict
      sample:
        - {name: db-20251001T0200Z, time: "2025-10-01T02:00:00Z", reason: daily, bytes: 1011200}
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.chajipoa.platform.plugins.module_utils.gfs_retention import complete_policy, plan


def gfs_retention(backups: list[dict], policy: dict | None = None) -> dict:
    try:
        return plan(backups, {} if policy is None else policy)
    except ValueError as error:
        raise AnsibleFilterError(f"gfs_retention: {error}") from error


def gfs_retention_policy(policy: dict, tier: str) -> dict:
    """Documented in gfs_retention_policy.yml beside this file."""
    try:
        return complete_policy(policy, tier)
    except ValueError as error:
        raise AnsibleFilterError(f"gfs_retention_policy: {error}") from error


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gfs_retention": gfs_retention, "gfs_retention_policy": gfs_retention_policy}
