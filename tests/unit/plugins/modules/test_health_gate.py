"""Unit tests of the health_gate module's argument spec against its documentation and its module_utils."""
from __future__ import annotations

import yaml

from ansible_collections.chajipoa.platform.plugins.module_utils.health_checks import COMMON_OPTIONS, KIND_OPTIONS, KINDS
from ansible_collections.chajipoa.platform.plugins.module_utils.health_stats import DEFAULT_THRESHOLDS
from ansible_collections.chajipoa.platform.plugins.modules import health_gate

DOC = yaml.safe_load(health_gate.DOCUMENTATION)
CHECK_SPEC = health_gate.ARGUMENT_SPEC["checks"]["options"]


def test_a_checks_options_are_the_kinds_options_and_the_common_ones():
    kind_options = set().union(*(set(options) for options in KIND_OPTIONS.values()))
    assert set(CHECK_SPEC) == kind_options | COMMON_OPTIONS
    assert CHECK_SPEC["kind"]["choices"] == list(KINDS)


def test_kind_options_carry_no_spec_default_so_a_stray_one_is_seen():
    # A default in the spec would arrive in every check whatever its kind; the kind's own defaults
    # are applied by health_checks instead.
    assert [name for name, spec in CHECK_SPEC.items() if "default" in spec and name not in COMMON_OPTIONS] == []


def test_the_documented_defaults_are_the_ones_applied():
    documented = DOC["options"]["thresholds"]["suboptions"]
    assert {key: documented[key]["default"] for key in documented} == DEFAULT_THRESHOLDS
    spec = health_gate.ARGUMENT_SPEC["thresholds"]["options"]
    assert {key: spec[key]["default"] for key in spec} == DEFAULT_THRESHOLDS


def test_the_password_and_the_headers_are_never_logged():
    assert CHECK_SPEC["password"]["no_log"] is True
    assert CHECK_SPEC["headers"]["no_log"] is True
