"""Ansible's collection loader, installed before any test imports the collection.

The roles' expressions call the collection's own filters (chajipoa.platform.peer_addresses), which
an offline Templar finds only through this loader; once Python has imported ansible_collections as
a plain package (the plugin tests do), the loader can no longer take it over.
"""
from __future__ import annotations

from ansible.plugins.loader import init_plugin_loader

from tests.conftest import ROOT

init_plugin_loader([str(ROOT / "collections")])
