#!/usr/bin/python
# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
# Documentation only: the work is done on the controller by the action plugin of the same name.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight
short_description: Judge a role's input checks in one task and report every failure at once
description:
  - Evaluates a list of checks, each a set of conditions with its own failure message, optionally
    per item of a loop and with variables of its own, and fails when any check fails, listing every
    failed check (and item) with its message.
  - Written because M(ansible.builtin.assert) judges one set of conditions with one message and
    stops at the first false one. A role's preflight written as one assert per rule costs a task per
    rule on every host of every run, and the controller's work per task decides a no-op run's time
    (issue 20); it also shows an operator one fault per run where this shows all of them.
  - The conditions and messages are judged as M(ansible.builtin.assert) judges its O(ansible.builtin.assert#module:that),
    one check (and one item) at a time, so a check's loop variable and O(checks[].vars) are bound
    when its conditions and message are templated.
  - Runs on the controller only and changes nothing; it runs in check mode as in a normal run.
version_added: 0.9.0
# The form validate-modules accepts without a GitHub handle; the team's address is in galaxy.yml.
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
options:
  checks:
    description:
      - The checks, judged in this order; every one is judged even after a failure.
      - Must be written out in the task, not produced by a template, since each check's conditions
        are templated only when that check is judged.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: What is checked; each failure's line starts with it.
        type: str
        required: true
      that:
        description: Conditions, as in a C(when); the check fails on the first that is false.
        type: list
        elements: str
        required: true
      fail_msg:
        description: The message of a failure, templated with the check's variables (and item).
        type: str
        required: true
      when:
        description: A condition; when false, the check is not judged.
        type: str
      loop:
        description: A template giving a list; the conditions are judged once per item.
        type: str
      loop_var:
        description: The name the current item has in the conditions and the message.
        type: str
        default: item
      label:
        description: A template naming a failed item in RV(failures[].item); the item itself if omitted.
        type: str
      vars:
        description: Variables of this check, templated when used (so they may refer to the item).
        type: dict
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Changes nothing in either mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Like M(ansible.builtin.assert), it needs no connection to the host; host variables and facts
    are those of the host it runs for.
seealso:
  - module: ansible.builtin.assert
"""

EXAMPLES = r"""
- name: Check the inputs
  chajipoa.platform.preflight:
    checks:
      - name: Check the operating system
        that:
          - ansible_facts['distribution'] == 'Debian'
          - ansible_facts['distribution_major_version'] == '12'
        fail_msg: "Only Debian 12 is supported, found {{ ansible_facts['distribution'] }}"
      - name: Check the administrators
        loop: "{{ common_admin_users }}"
        label: "{{ item.name }}"
        that: item.ssh_keys | default([]) | length > 0
        fail_msg: "common_admin_users: '{{ item.name }}' needs at least one key in ssh_keys"
      - name: Check the TLS files
        when: not tls_self_signed
        vars:
          missing: "{{ [tls_cert_file, tls_key_file] | select('equalto', '') | list }}"
        that: missing | length == 0
        fail_msg: tls_cert_file and tls_key_file are required without a self-signed certificate
"""

RETURN = r"""
checked:
  description: How many checks were given.
  returned: always
  type: int
  sample: 6
failures:
  description: Every failed check (and item), in order.
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description: The check's name.
      type: str
      sample: Check the administrators
    msg:
      description: The check's message, templated.
      type: str
      sample: "common_admin_users: 'ops' needs at least one key in ssh_keys"
    item:
      description: The failed item (or its label), for a check with a loop.
      type: raw
      sample: ops
msg:
  description: One line per failure, the check's name and its message; a summary when everything passed.
  returned: always
  type: str
  sample: All 6 checks passed
"""
