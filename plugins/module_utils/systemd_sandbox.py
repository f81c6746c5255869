# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The systemd sandbox of every service unit the platform ships or configures, in one place.

BASE is the set of directives every unit gets. UNITS names each unit (as its file is named: a
template unit by its ``@.service``), the exposure `systemd-analyze security` may report for it
(``limit``, 4.0 "OK" unless the service's job needs more, and then ``reason`` says why), and where
it departs from BASE (``directives``; None leaves a directive out, and ``why`` says why for each, or
for several named in one key;
``note`` explains any other departure). A unit of Debian's that a role configures but cannot sandbox
further runs as Debian ships it: ``as_shipped`` says why, and the role writes no sandbox for it.

The roles render a unit's directives with the filter chajipoa.platform.systemd_sandbox, which writes
the limit and every reason beside them as comments; the molecule scenarios compare each unit's
measured exposure with its limit here; a unit test holds every unit template of the roles to an
entry here. A role's own inputs (paths it writes, its <role>_systemd_sandbox_directives) are
merged over a unit's entry by the filter.

Containers: the lab and molecule hosts are systemd containers with CAP_SYS_ADMIN. Every directive of
BASE works there as on a VM (mount, UTS and IPC namespaces, seccomp, capability sets). PrivateUsers
does not (status=217/USER: no user namespace in the container) and is therefore not in BASE.

Stdlib only: the molecule tests import it from the project.
"""
from __future__ import annotations

import re
import textwrap
from typing import Any, Mapping

# systemd-analyze security calls an exposure up to this "OK".
DEFAULT_LIMIT = 4.0

# Everything a service that reads its configuration, writes nothing outside its ReadWritePaths,
# talks over IP and Unix sockets and never changes user can live with.
BASE: dict[str, Any] = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateMounts": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "KeyringMode": "private",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RemoveIPC": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": ["@system-service", "~@privileged @resources"],
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0077",
}

# Reasons shared by several units.
_POSTGRES_IPC = ("the unit runs as postgres, like the PostgreSQL server: removing that user's IPC objects when it "
                 "stops would pull the server's shared memory away")
_POSTGRES_JIT = "PostgreSQL's JIT (LLVM) writes the code it compiles into executable memory"
_ROOT_IPC = "the master runs as root: removing root's IPC objects when it stops would touch every root service"

# Directives that give a service a mount namespace of its own.
_MOUNTS = ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectKernelTunables",
           "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc", "ProcSubset")
_PACKAGES = ("it installs packages, whose maintainer scripts write anywhere on the host, add users and restart "
             "services: a sandbox would break upgrades half-way")
# sysstat's three units (at boot, every ten minutes, daily) run sa1 and sa2 alike.
_SYSSTAT = {
    "note": "sadc writes /var/log/sysstat and needs no socket",
    "directives": {"ProcSubset": None, "RestrictAddressFamilies": "AF_UNIX"},
    "why": {"ProcSubset": "sadc reads the host's statistics in /proc"},
}

UNITS: dict[str, dict[str, Any]] = {
    # --- common role: Debian's units it configures ---------------------------------------------
    "nftables.service": {
        "note": "loading the ruleset needs CAP_NET_ADMIN and a netlink socket, and nothing else",
        "directives": {"CapabilityBoundingSet": "CAP_NET_ADMIN", "RestrictAddressFamilies": "AF_UNIX AF_NETLINK"},
    },
    "acct.service": {
        "note": "root keeps CAP_SYS_PACCT and the acct system call, without network",
        "directives": {"CapabilityBoundingSet": "CAP_SYS_PACCT", "PrivateNetwork": "yes", "RestrictAddressFamilies": "AF_UNIX",
                       "SystemCallFilter": ["@system-service", "~@privileged @resources", "acct"],
                       **{directive: None for directive in _MOUNTS}},
        "why": {" ".join(_MOUNTS): ("accton hands the kernel the accounting file and exits; in a mount namespace of "
                                    "its own the file's mount goes with it and the kernel stops accounting (observed)")},
    },
    "sysstat.service": _SYSSTAT,
    "sysstat-collect.service": _SYSSTAT,
    "sysstat-summary.service": _SYSSTAT,
    "systemd-journal-upload.service": {
        "note": "systemd's own unit (exposure 4.9 as shipped) with what it leaves out added",
    },
    "chrony.service": {
        "as_shipped": "Debian's unit sandboxes chronyd (exposure 3.5), which keeps CAP_SYS_TIME to set the clock",
    },
    "systemd-journald.service": {
        "limit": 4.3,
        "as_shipped": "systemd's own unit, as tight as a daemon that reads every process's log and the kernel's can be",
    },
    "ssh.service": {
        "limit": 9.6,
        "as_shipped": ("every login session is sshd's child and inherits its sandbox: a read-only system, no "
                       "capabilities or no setuid would leave administrators unable to administer the host"),
    },
    "auditd.service": {
        "limit": 8.7,
        "as_shipped": ("auditd controls the kernel's audit subsystem and, on a full disk, takes its configured action "
                       "(single-user mode, halt) with root's full power; no container can run it, so no tighter "
                       "sandbox could be tested here"),
    },
    "unattended-upgrades.service": {"limit": 9.6, "as_shipped": _PACKAGES},
    "apt-daily.service": {"limit": 9.6, "as_shipped": _PACKAGES},
    "apt-daily-upgrade.service": {"limit": 9.6, "as_shipped": _PACKAGES},
    # --- common role: its own units ------------------------------------------------------------
    "chajipoa-debsums.service": {
        "note": ("debsums reads every installed package's files, whoever owns the directories they are in: "
                 "root keeps CAP_DAC_READ_SEARCH (read and search anything) and nothing else; it needs no network"),
        "directives": {"CapabilityBoundingSet": "CAP_DAC_READ_SEARCH", "PrivateNetwork": "yes",
                       "RestrictAddressFamilies": "AF_UNIX"},
    },
    # --- backup role ---------------------------------------------------------------------------
    "chajipoa-backup@.service": {
        "directives": {"RemoveIPC": None},
        "why": {"RemoveIPC": _POSTGRES_IPC},
    },
    "chajipoa-backup-verify@.service": {
        "directives": {"RemoveIPC": None},
        "why": {"RemoveIPC": _POSTGRES_IPC},
    },
    "chajipoa-backup-verify-daily.service": {
        "directives": {"RemoveIPC": None},
        "why": {"RemoveIPC": _POSTGRES_IPC},
    },
    # --- postgres role -------------------------------------------------------------------------
    "postgresql-maintenance.service": {
        "directives": {"RemoveIPC": None, "PrivateNetwork": "yes"},
        "why": {"RemoveIPC": _POSTGRES_IPC},
    },
    "postgresql.service": {
        "note": "Debian's unit that gathers the clusters' units runs /bin/true: it needs no network either",
        "directives": {"PrivateNetwork": "yes", "RestrictAddressFamilies": "AF_UNIX"},
    },
    "postgresql@.service": {
        "directives": {"RemoveIPC": None, "MemoryDenyWriteExecute": None},
        "why": {"RemoveIPC": _POSTGRES_IPC, "MemoryDenyWriteExecute": _POSTGRES_JIT},
    },
    # --- redis role ----------------------------------------------------------------------------
    "redis-server.service": {
        "directives": {"UMask": None},
        "why": {"UMask": "Debian's unit sets UMask=007, so that group redis reads what Redis writes"},
    },
    # --- pgbouncer role ------------------------------------------------------------------------
    "pgbouncer.service": {
        "directives": {"RemoveIPC": None},
        "why": {"RemoveIPC": _POSTGRES_IPC},
    },
    # --- app role ------------------------------------------------------------------------------
    "app@.service": {
        "directives": {"MemoryDenyWriteExecute": None},
        "why": {"MemoryDenyWriteExecute": "V8 (Node.js) compiles JavaScript into executable memory"},
    },
    # --- edge role -----------------------------------------------------------------------------
    "nginx.service": {
        "note": ("nginx's master runs as root to bind 80 and 443, open its logs and keys and switch its "
                 "workers to www-data, whom it then signals: it keeps CAP_NET_BIND_SERVICE, CAP_SETUID, "
                 "CAP_SETGID, CAP_CHOWN, CAP_DAC_OVERRIDE and CAP_KILL and the system calls that change user"),
        "directives": {
            "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN CAP_DAC_OVERRIDE CAP_KILL",
            "SystemCallFilter": ["@system-service"],
            "RemoveIPC": None,
            "UMask": "0027",
        },
        "why": {"RemoveIPC": _ROOT_IPC},
    },
    # --- monitoring role -----------------------------------------------------------------------
    "prometheus.service": {
        "directives": {"ProtectProc": None},
        "why": {"ProtectProc": ("Debian's unit sets PrivateUsers=true, and systemd cannot start a service with both "
                                "inside a container (status=217/USER), such as the lab's")},
    },
    "prometheus-alertmanager.service": {},
    "prometheus-blackbox-exporter.service": {},
    "prometheus-node-exporter.service": {
        "directives": {"ProcSubset": None, "ProtectProc": None},
        "why": {"ProcSubset": "the node exporter reads the host's statistics in /proc",
                "ProtectProc": "the node exporter counts every process of the host"},
    },
    "prometheus-postgres-exporter.service": {},
    "prometheus-redis-exporter.service": {},
    "prometheus-nginx-exporter.service": {},
    "prometheus-pgbouncer-exporter.service": {},
    "prometheus-mongodb-exporter.service": {},
    "prometheus-managed-exporter@.service": {},
}

_DIRECTIVE = re.compile(r"^[A-Z][A-Za-z]+$")


class SandboxError(ValueError):
    """A unit or a directive the sandbox cannot write."""


def limit(unit: str) -> float:
    """The highest exposure `systemd-analyze security` may report for unit (a unit name, an instance
    such as chajipoa-backup@daily.service, or an app's app@<colour>.service given as its template)."""
    return float(entry(unit).get("limit", DEFAULT_LIMIT))


def template_name(unit: str) -> str:
    """foo@bar.service -> foo@.service; any other name unchanged."""
    return re.sub(r"@[^.]*\.", "@.", unit, count=1)


def entry(unit: str) -> dict[str, Any]:
    name = template_name(unit)
    if name not in UNITS:
        raise SandboxError(f"Cannot sandbox {unit}: it has no entry in plugins/module_utils/systemd_sandbox.py UNITS")
    return UNITS[name]


def sandboxed(unit: str) -> bool:
    """Whether a role writes unit's sandbox (False: it runs as Debian ships it, for the reason recorded)."""
    return "as_shipped" not in entry(unit)


def directives(unit: str, overrides: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """BASE, then the unit's own departures, then overrides (a role's paths and inputs): each
    directive with its values in order (None leaves it out)."""
    if not sandboxed(unit):
        raise SandboxError(f"Cannot sandbox {unit}: it runs as Debian ships it, because {entry(unit)['as_shipped']}")
    merged: dict[str, Any] = dict(BASE)
    for layer in (entry(unit).get("directives", {}), overrides or {}):
        for key, value in layer.items():
            if not isinstance(key, str) or not _DIRECTIVE.match(key):
                raise SandboxError(f"Cannot sandbox {unit}: {key!r} is not a systemd directive name")
            merged[key] = value
    result: dict[str, list[str]] = {}
    for key, value in merged.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        lines = []
        for item in values:
            if isinstance(item, bool):
                item = "yes" if item else "no"
            text = str(item)
            if any(ord(char) < 32 or ord(char) == 127 for char in text):
                raise SandboxError(f"Cannot sandbox {unit}: the value of {key} holds a control character or a line break")
            lines.append(text)
        result[key] = lines
    return result


def render(unit: str, overrides: Mapping[str, Any] | None = None) -> str:
    """The [Service] lines of unit's sandbox, with its limit and every reason as comments; for a unit
    run as Debian ships it, why, as a comment (overrides have nothing to go in)."""
    unit_entry = entry(unit)
    if not sandboxed(unit):
        if overrides:
            directives(unit)
        return "\n".join(textwrap.wrap(
            f"# No sandbox (plugins/module_utils/systemd_sandbox.py): systemd-analyze security exposure "
            f"{limit(unit):.1f}, as Debian ships the unit, because {unit_entry['as_shipped']}.",
            100, subsequent_indent="#   ")) + "\n"
    head = [f"# Sandbox (plugins/module_utils/systemd_sandbox.py): systemd-analyze security exposure at most "
            f"{limit(unit):.1f}."]
    if "reason" in unit_entry:
        head.append(f"# Above {DEFAULT_LIMIT:.1f} because {unit_entry['reason']}.")
    if "note" in unit_entry:
        head.append(f"# {unit_entry['note']}.")
    for keys, why in unit_entry.get("why", {}).items():
        head.append(f"# No {', '.join(keys.split())}: {why}.")
    head = [line for text in head for line in textwrap.wrap(text, 100, subsequent_indent="#   ")]
    body = [f"{key}={value}" for key, values in directives(unit, overrides).items() for value in values]
    return "\n".join(head + body) + "\n"
