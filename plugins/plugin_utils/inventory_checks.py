# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""What the validation play checks in an inventory, on the controller, before any host is contacted.

The filters missing_secrets and inventory_faults are thin wrappers around this module. Rules that
are data (which variable has which format, the patterns of identifiers, the pg_hba methods allowed)
come from roles/validate_inventory/vars/main.yml; what is here is how those rules are applied.

A host's variables are read through a getter that raises KeyError for a variable that is absent
or cannot be known yet (a template over facts, an unset vault_ variable): such a value is not
judged here, the role preflights see it once facts are gathered.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2.exceptions import UndefinedError

from ansible.errors import AnsibleUndefinedVariable
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.chajipoa.platform.plugins.module_utils.gfs_retention import TIER_POLICIES

Getter = Callable[[str], Any]
# The gate runs on every site.yml: libyaml reads the roles' specifications several times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# C0 and C1 control characters, DEL, and Unicode's line and paragraph separators: each of them ends
# a line, or a token, in one of the files the roles write (pg_hba.conf, users.acl, unit files,
# nftables rules, env files).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]{6,1024}")
_HBA_TYPES = ("local", "host", "hostssl", "hostnossl")
_HBA_ADDRESS_KEYWORDS = ("all", "samehost", "samenet")
# ACL rule tokens that would weaken or undo the password the role sets on every user (the file line
# is "user <name> reset on|off #<sha256> <rules>"): nopass accepts any password, >, #, < and !
# add or remove passwords behind the role's back, reset and resetpass drop the role's password,
# on and off override the user's enabled flag.
_ACL_REFUSED_TOKENS = {
    "nopass": "lets the user in with any password",
    "resetpass": "removes the password the role sets",
    "reset": "removes the password the role sets",
    "on": "overrides the user's enabled flag (use enabled)",
    "off": "overrides the user's enabled flag (use enabled)",
}
_ACL_REFUSED_PREFIXES = {
    ">": "adds a clear-text password to the ACL file",
    "<": "removes a password",
    "#": "adds a password the inventory does not manage",
    "!": "removes a password",
}


def getter(variables: Mapping[str, Any]) -> Getter:
    """A reader of variables (such as hostvars[host]) that raises KeyError for an absent or undefined one.

    The value is copied into plain dicts and lists, so that a template deep inside it fails here.
    """
    def get(name: str) -> Any:
        try:
            return plain(variables[name])
        except (UndefinedError, AnsibleUndefinedVariable) as error:
            raise KeyError(name) from error
    return get


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def _filled(value: Any) -> bool:
    """Set to something: a string of more than blanks, or a non-empty list or mapping."""
    return bool(value.strip()) if isinstance(value, str) else bool(value)


class Hidden:
    """Stands for a value a message must not show: ACL rules may hold a password, a key file is one."""

    def __repr__(self) -> str:
        return "(value hidden)"


HIDDEN = Hidden()
_HIDDEN_FORMATS = frozenset({"redis_acl_rules", "mongodb_key"})


class RuleError(ValueError):
    """The rules themselves are wrong (an unknown format name, a bad pattern)."""


def kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "null"
    return "a string" if isinstance(value, str) else type(value).__name__


# Every value of the example vault starts so (inventories/production/group_vars/all/vault.yml).
EXAMPLE_SECRET_PREFIX = "example"


def secret_problem(value: Any) -> str | None:
    """Why a secret's value is unusable, or None for a non-blank string."""
    if value is None:
        return "is not set"
    if not isinstance(value, str):
        return f"is {kind(value)}, not a string"
    if not value.strip():
        return "is blank"
    return None


Condition = Callable[[list, bool], bool]


def condition(get: Getter, defines: Callable[[str], bool]) -> Condition:
    """Whether a conditional catalogue entry (needed_if: dotted variable paths) holds on a host.

    The first path whose variable the host defines decides, as a role default such as
    app_market: "{{ platform_market | default({}) }}" reads it: the secret is needed when the value
    there is set, not blank and not the boolean false (a switch turned off). Where the host defines
    none of them, the entry's default decides: the role's own default for its switch. A variable
    that cannot be rendered keeps the secret needed, so that a broken provider setting is reported
    rather than taken for "no provider".
    """
    def holds(paths: list, default: bool) -> bool:
        for path in paths:
            root, *keys = path.split(".")
            if not defines(root):
                continue
            try:
                value = get(root)
            except KeyError:
                return True
            for key in keys:
                value = value.get(key) if isinstance(value, Mapping) else None
            if isinstance(value, bool):
                return value
            return value is not None and str(value).strip() != ""
        return default
    return holds


def catalogue_names(catalogue: Iterable[Any], groups: Iterable[str] | None = None,
                    holds: Condition | None = None) -> list[str]:
    """The names of a secrets catalogue (names, or mappings with name, groups, needed_if and default) a
    host needs. A name may have several entries (other groups, other conditions): any one decides.

    Without groups every entry's groups match; without holds every needed_if is taken to hold.
    """
    wanted = None if groups is None else set(groups)
    names = []
    for entry in catalogue:
        if isinstance(entry, str):
            name, needed_by, needed_if, default = entry, None, None, False
        elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            name, needed_by, needed_if = entry["name"], entry.get("groups"), entry.get("needed_if")
            default = entry.get("default", False)
        else:
            raise RuleError(f"a catalogue entry must be a secret's name or a mapping with a name, got {kind(entry)}")
        if needed_if is not None and not (isinstance(needed_if, list) and all(isinstance(path, str) for path in needed_if)):
            raise RuleError(f"{name}: needed_if must be a list of variable paths, got {kind(needed_if)}")
        if not isinstance(default, bool):
            raise RuleError(f"{name}: default must be a boolean, got {kind(default)}")
        if needed_by is not None and wanted is not None and not wanted & set(needed_by):
            continue
        if needed_if is not None and holds is not None and not holds(needed_if, default):
            continue
        if name not in names:
            names.append(name)
    return names


def missing_secrets(catalogue: Iterable[Any], get: Getter, groups: Iterable[str] | None = None,
                    defines: Callable[[str], bool] | None = None) -> list[str]:
    """The catalogued secrets that are absent, blank or not strings, in catalogue order.

    defines(name) says whether the host defines a variable; the needed_if of catalogue entries is
    judged with it (without it, every conditional entry is needed).
    """
    missing = []
    holds = condition(get, defines) if defines else None
    for name in catalogue_names(catalogue, groups, holds):
        try:
            value = get(name)
        except KeyError:
            missing.append(name)
            continue
        if secret_problem(value):
            missing.append(name)
    return missing


# --- Formats --------------------------------------------------------------------------------
# A check returns what is wrong with a value (never the value itself: it may be a secret), or None.

def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    return None


def _int_range(low: int, high: int | None, what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        number = _whole_number(value)
        if number is None:
            return f"is {kind(value)}, not {what}"
        if number < low or (high is not None and number > high):
            return f"is out of range for {what}"
        return None
    return check


def _address(value: Any) -> str | None:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return "is not an IPv4 or IPv6 address"
    return None


def _source(value: Any) -> str | None:
    """An address or a CIDR network without host bits, as nftables and the argument specs take them."""
    try:
        ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        return "is not an IPv4/IPv6 address or CIDR network (such as 10.20.0.0/24; names are not resolved)"
    return None


def _host(value: Any) -> str | None:
    if not isinstance(value, str) or (_address(value) and not _HOSTNAME.fullmatch(value)):
        return "is not a host name or address"
    return None


def _host_port(value: Any) -> str | None:
    host, colon, port = str(value).rpartition(":")
    if not colon or _host(host.strip("[]")) or _int_range(1, 65535, "a port")(port):
        return "is not host:port"
    return None


def _listen_address(value: Any) -> str | None:
    if value in ("*", "localhost"):
        return None
    return _address(value) and "is not an address, localhost or *"


def _redis_bind(value: Any) -> str | None:
    # Redis 7: a leading "-" makes an address optional (bind does not fail when it is absent).
    text = str(value)
    if text in ("*", "-::*"):
        return None
    return _address(text[1:] if text.startswith("-") else text) and "is not an address, -address or *"


def _mongodb_key(value: Any) -> str | None:
    # The key file is written whole; openssl rand -base64 wraps its output, so whitespace is allowed.
    if not isinstance(value, str) or not _BASE64.fullmatch(re.sub(r"\s", "", value)):
        return "is not 6 to 1024 base64 characters (e.g. openssl rand -base64 756)"
    return None


def _acl_rules(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"is {kind(value)}, not a string of ACL rules"
    for token in value.split():
        reason = _ACL_REFUSED_TOKENS.get(token.lower()) or _ACL_REFUSED_PREFIXES.get(token[0])
        if reason:
            return f"holds the ACL rule {token if token[0] not in _ACL_REFUSED_PREFIXES else token[0] + '...'}, which {reason}"
    return None


BUILTIN_FORMATS: dict[str, Callable[[Any], str | None]] = {
    "port": _int_range(1, 65535, "a port (1 to 65535)"),
    "count": _int_range(0, None, "a count (a whole number >= 0)"),
    "positive": _int_range(1, None, "a whole number >= 1"),
    "milliseconds_or_off": _int_range(-1, None, "a number of milliseconds, or -1 for off"),
    "address": _address,
    "source": _source,
    "host": _host,
    "optional_host": lambda value: None if value == "" else _host(value),
    "host_port": _host_port,
    "listen_address": _listen_address,
    "redis_bind": _redis_bind,
    "mongodb_key": _mongodb_key,
    "redis_acl_rules": _acl_rules,
}


class Rules:
    """The validation rules of roles/validate_inventory/vars/main.yml (_validate_inventory_rules)."""

    def __init__(self, rules: Mapping[str, Any]):
        if not isinstance(rules, Mapping):
            raise RuleError(f"the rules must be a mapping, got {kind(rules)}")
        self.formats: Mapping[str, Any] = rules.get("formats") or {}
        self.hba_methods: Mapping[str, list[str]] = rules.get("hba_methods") or {}
        self.environments = list(rules.get("environments") or [])
        self.multiline = set(rules.get("multiline") or [])
        self.required_outside_development = list(rules.get("required_outside_development") or [])
        self.required_in_groups = list(rules.get("required_in_groups") or [])
        for key, requirements in (("required_outside_development", self.required_outside_development),
                                  ("required_in_groups", self.required_in_groups)):
            for requirement in requirements:
                if not isinstance(requirement, Mapping) or not requirement.get("any_of") or not requirement.get("means"):
                    raise RuleError(f"each entry of {key} needs any_of (variables) and means (words)")
        if not all(requirement.get("groups") for requirement in self.required_in_groups):
            raise RuleError("each entry of required_in_groups needs groups (the hosts concerned)")
        self.controller_files = list(rules.get("controller_files") or [])
        self.tls_files: Mapping[str, list[str]] = rules.get("tls_files") or {}
        if not isinstance(self.tls_files, Mapping) or not all(isinstance(names, list) for names in self.tls_files.values()):
            raise RuleError("tls_files maps each <role>_tls_self_signed switch to a list of variables")
        self.checks = dict(BUILTIN_FORMATS)
        for name, pattern in (rules.get("patterns") or {}).items():
            if not isinstance(pattern, Mapping) or "pattern" not in pattern or "means" not in pattern:
                raise RuleError(f"pattern {name} needs the keys pattern and means")
            try:
                self.checks[name] = _pattern_check(re.compile(pattern["pattern"]), pattern["means"])
            except re.error as error:
                raise RuleError(f"pattern {name} does not compile: {error}") from error
        if "hba_names" not in self.checks:
            raise RuleError("the patterns need hba_names (the database and user fields of pg_hba entries)")
        self.checks["hba_entry"] = self._hba_entry
        self._check_spec_names(self.formats.values())

    def _check_spec_names(self, specs: Iterable[Any]) -> None:
        for spec in specs:
            if isinstance(spec, str):
                if spec not in self.checks:
                    raise RuleError(f"unknown format {spec}")
            elif isinstance(spec, Mapping):
                self._check_spec_names(value for key, value in spec.items() if key in ("items", "keys", "values"))
                self._check_spec_names((spec.get("fields") or {}).values())
            else:
                raise RuleError(f"a format is a name or a mapping, got {kind(spec)}")

    def _hba_entry(self, entry: Any) -> str | None:
        if not isinstance(entry, Mapping):
            return f"is {kind(entry)}, not a mapping"
        kind_ = entry.get("type")
        if kind_ not in _HBA_TYPES:
            return f"has type {kind_!r}; one of {', '.join(_HBA_TYPES)}"
        for field in ("database", "user"):
            problem = self.checks["hba_names"](entry[field]) if field in entry else "is missing"
            if problem:
                return f"has a {field} that {problem}"
        scope = "local" if kind_ == "local" else "network"
        allowed = self.hba_methods.get(scope) or []
        if entry.get("method") not in allowed:
            return f"has method {entry.get('method')!r}, refused for {scope} lines; allowed: {', '.join(allowed)}"
        addresses = entry.get("address")
        if kind_ == "local":
            return "has an address, which local lines do not take" if addresses not in (None, "", []) else None
        addresses = addresses if isinstance(addresses, list) else [addresses]
        if not addresses or any(address in (None, "") or _hba_address(address) for address in addresses):
            return "needs addresses that are IPv4/IPv6 addresses or networks, host names, all, samehost or samenet"
        return None

    def check(self, path: str, value: Any, spec: Any) -> list[tuple[str, Any, str]]:
        """(path, value there, problem) for every part of value that breaks spec."""
        if isinstance(spec, str):
            problem = self.checks[spec](value)
            return [(path, HIDDEN if spec in _HIDDEN_FORMATS else value, problem)] if problem else []
        # A string where a list or mapping belongs is refused, not skipped: the argument specifications
        # split "a, b" into a list for their check only, and the role receives the string.
        if "items" in spec and not isinstance(value, list):
            return [(path, value, f"is {kind(value)}, not a list")]
        if {"fields", "keys", "values"} & set(spec) and not isinstance(value, Mapping):
            return [(path, value, f"is {kind(value)}, not a mapping")]
        found: list[tuple[str, Any, str]] = []
        if "items" in spec:
            for index, item in enumerate(value):
                found += self.check(f"{path}[{index}]", item, spec["items"])
        if isinstance(value, Mapping):
            if "keys" in spec:
                found += [(f"{path} key", key, problem) for key in value
                          for problem in [self.checks[spec["keys"]](key)] if problem]
            for field, field_spec in (spec.get("fields") or {}).items():
                if field in value:
                    found += self.check(f"{path}.{field}", value[field], field_spec)
            if "values" in spec:
                for key, item in value.items():
                    found += self.check(f"{path}.{key}", item, spec["values"])
        return found


def _pattern_check(pattern: re.Pattern, means: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not pattern.fullmatch(str(value)):
            return f"is not {means}"
        return None
    return check


def _hba_address(value: Any) -> bool:
    """True when value is not something pg_hba.conf takes as an address."""
    text = str(value)
    if text in _HBA_ADDRESS_KEYWORDS:
        return False
    try:
        ipaddress.ip_network(text, strict=False)
        return False
    except ValueError:
        return not _HOSTNAME.fullmatch(text.lstrip("."))


def control_characters(path: str, value: Any) -> list[str]:
    """The paths inside value (strings, and keys and items of mappings and lists) holding a control character."""
    if isinstance(value, str):
        return [path] if _CONTROL.search(value) else []
    found = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _CONTROL.search(key):
                found.append(f"{path} key {key!r}")
            found += control_characters(f"{path}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found += control_characters(f"{path}[{index}]", item)
    return found


# --- Roles' argument specifications -----------------------------------------------------------

@lru_cache(maxsize=None)
def role_specs(roles_dir: str) -> dict[str, dict[str, dict]]:
    """Every role's argument_specs (entry point -> options) under roles_dir."""
    specs = {}
    for path in sorted(Path(roles_dir).glob("*/meta/argument_specs.yml")):
        data = yaml.load(path.read_text(), Loader=_YAML_LOADER) or {}
        specs[path.parent.parent.name] = {
            entry: dict(spec.get("options") or {}) for entry, spec in (data.get("argument_specs") or {}).items()
        }
    if not specs:
        raise RuleError(f"no role with meta/argument_specs.yml under {roles_dir}")
    return specs


@lru_cache(maxsize=None)
def role_defaults(roles_dir: str) -> dict[str, Any]:
    """The roles' defaults that are plain values; a templated default is only known on the host."""
    found = {}
    for path in sorted(Path(roles_dir).glob("*/defaults/main.yml")):
        for name, value in (yaml.load(path.read_text(), Loader=_YAML_LOADER) or {}).items():
            if not (isinstance(value, str) and ("{{" in value or "{%" in value)):
                found[name] = value
    return found


def known_variables(specs: Mapping[str, Mapping[str, Mapping]], secrets: Iterable[str]) -> set[str]:
    return {name for entries in specs.values() for options in entries.values() for name in options} | set(secrets)


def closest(name: str, known: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def shape_problems(options: Mapping[str, Mapping], values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any, str]]:
    """(path, value, problem) for each string the specification types as a list or a dict, in the values
    and their suboptions. ArgumentSpecValidator accepts such a string by splitting it ("a,b", "k=v"),
    but only in its own copy: the role would receive the string and iterate over its characters."""
    for name, option in options.items():
        if name not in values:
            continue
        value, wanted, path = values[name], option.get("type"), f"{prefix}{name}"
        if wanted in ("list", "dict") and isinstance(value, str):
            yield path, value, f"is a string, not a {'list' if wanted == 'list' else 'mapping'}"
            continue
        suboptions = option.get("options")
        if not suboptions:
            continue
        if wanted == "list" and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from shape_problems(suboptions, item, f"{path}[{index}].")
        elif isinstance(value, Mapping):
            yield from shape_problems(suboptions, value, f"{path}.")


def argument_errors(options: Mapping[str, Mapping], values: Mapping[str, Any]) -> list[str]:
    """The argument-spec errors of the values an inventory sets, with no_log values masked.

    Required options are not enforced: a role's defaults and the playbooks provide the inputs the
    inventory leaves out, and missing secrets are reported by missing_secrets, by name.
    """
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    spec = {name: {key: value for key, value in option.items() if key not in ("required", "description")}
            for name, option in options.items()}
    result = ArgumentSpecValidator(spec).validate(dict(values))
    hidden = [str(values[name]) for name, option in options.items()
              if option.get("no_log") and name in values and str(values[name])]
    messages = []
    for message in result.error_messages:
        for secret in hidden:
            message = message.replace(secret, "********")
        messages.append(message)
    return messages


# --- Files -------------------------------------------------------------------------------------

def plaintext_vaults(sources: Iterable[str]) -> list[str]:
    """vault.yml files beside the inventory sources that are not encrypted with ansible-vault.

    Read raw: Ansible's own file lookup would decrypt them and hide which is which.
    """
    found = []
    for source in sources:
        base = Path(source)
        base = base if base.is_dir() else base.parent
        for folder in ("group_vars", "host_vars"):
            for path in sorted((base / folder).glob("**/vault.y*ml")):
                with path.open("rb") as handle:
                    if not handle.read(14).startswith(b"$ANSIBLE_VAULT"):
                        found.append(str(path))
    return found


# --- One host ----------------------------------------------------------------------------------

def show(value: Any) -> str:
    text = repr(value if not isinstance(value, str) else str(value))
    return text if len(text) <= 80 else text[:77] + "..."


def shared_addresses(addresses: Mapping[str, Any]) -> list[str]:
    """The hosts whose private_address another host has too, as "Cannot configure <host>: ..." lines;
    `addresses` maps each host to its private_address, or to None where it has none."""
    holders: dict[Any, list[str]] = {}
    for host, address in addresses.items():
        if address:
            holders.setdefault(str(address), []).append(host)
    return [f"Cannot configure {host}: private_address {show(address)} is also {other}'s; each host needs its own"
            for address, hosts in holders.items() for host in hosts for other in hosts if other != host]


class HostCheck:
    """Everything the gate finds wrong with one host's inventory, as "Cannot configure <host>: ..." lines.

    get(name) reads a variable of the host and peer(host, name) one of another host; both raise
    KeyError for a variable that is absent or not known before facts are gathered.
    """

    def __init__(self, host: str, get: Getter, names: Iterable[str], groups: Mapping[str, list[str]],
                 peer: Callable[[str, str], Any], rules: Rules, specs: Mapping[str, Mapping[str, Mapping]],
                 catalogue: Iterable[Any], group_roles: Mapping[str, list[str]], vault_files: Iterable[str] = (),
                 defaults: Mapping[str, Any] | None = None):
        self.host, self.get, self.peer, self.rules, self.specs = host, get, peer, rules, specs
        self.defaults = defaults or {}
        self.names = sorted(set(names))
        self.groups = groups
        self.group_names = [group for group, hosts in groups.items() if host in hosts and group not in ("all", "ungrouped")]
        self.roles = {role for group in self.group_names for role in group_roles.get(group) or []}
        self.secrets = catalogue_names(catalogue)
        # A secret the host's groups do not need is not used there: judged only on the hosts that use it.
        # So is a conditional one whose provider the host's inventory does not name.
        holds = condition(get, set(self.names).__contains__)
        self.unused_secrets = set(self.secrets) - set(catalogue_names(catalogue, self.group_names, holds))
        self.hidden = set(self.secrets) | {name for entries in specs.values() for options in entries.values()
                                           for name, option in options.items() if option.get("no_log")}
        self.vault_files = list(vault_files)
        self.faults: list[str] = []

    def fault(self, text: str) -> None:
        # The formats and the argument specifications may find the same string where a list belongs.
        line = f"Cannot configure {self.host}: {text}"
        if line not in self.faults:
            self.faults.append(line)

    def value(self, name: str, default: Any = None) -> Any:
        try:
            return self.get(name)
        except KeyError:
            return default

    def effective(self, name: str) -> Any:
        """The inventory's value, else the role's plain default."""
        return self.value(name, self.defaults.get(name))

    def run(self) -> list[str]:
        self.check_variables()
        self.check_argument_specs()
        self.check_topology()
        self.check_environment()
        self.check_secret_padding()
        self.check_tls_files()
        self.check_controller_files()
        return self.faults

    def check_variables(self) -> None:
        prefixes = tuple(f"{role}_" for role in self.specs)
        known = known_variables(self.specs, self.secrets)
        for name in self.names:
            role_input = name.startswith(prefixes)
            if name in self.unused_secrets or not (role_input or name in self.secrets or name in self.rules.formats):
                continue
            if role_input and name not in known:
                guess = closest(name, known)
                self.fault(f"{name} is no role's input and no secret" + (f"; did you mean {guess}?" if guess else ""))
                continue
            try:
                value = self.get(name)
                if name not in self.rules.multiline:
                    for path in control_characters(name, value):
                        self.fault(f"{path} holds a newline or another control character, which would end a line "
                                   "of the file it is written to")
                if name in self.rules.formats:
                    for path, part, problem in self.rules.check(name, value, self.rules.formats[name]):
                        shown = "(secret)" if name in self.hidden else show(part)
                        self.fault(f"{path} {shown} {problem}")
            except KeyError:
                continue

    def check_argument_specs(self) -> None:
        for role in sorted(self.roles):
            options = self.specs.get(role, {}).get("main", {})
            values = {}
            for name in options:
                if name in self.names:
                    try:
                        values[name] = self.get(name)
                    except KeyError:
                        continue
            for path, value, problem in shape_problems(options, values):
                shown = "(secret)" if path in self.hidden else show(value)
                self.fault(f"{path} {shown} {problem}")
            for error in argument_errors(options, values):
                self.fault(f"{error} (role {role}'s argument specification)")

    def check_topology(self) -> None:
        groups, host = self.groups, self.host
        primaries = groups.get("postgres") or []
        if "postgres" in self.group_names and len(primaries) > 1:
            self.fault(f"group postgres holds {', '.join(primaries)}; it takes exactly one host, the primary "
                       "(standbys go in group postgres_replica)")
        if "postgres_replica" in self.group_names:
            if not primaries:
                self.fault("it is in group postgres_replica, but group postgres holds no primary to replicate from")
            if "postgres" in self.group_names:
                self.fault("it is in both groups postgres and postgres_replica; a host is the primary or a standby")
        primary = self.value("postgres_primary_host")
        if primary and {"postgres", "postgres_replica"} & set(self.group_names) and primary not in primaries:
            self.fault(f"postgres_primary_host {show(primary)} is not the host of group postgres")
        source = self.value("redis_replica_of")
        if source and "redis" in self.group_names:
            if source == host or source not in (groups.get("redis") or []):
                self.fault(f"redis_replica_of {show(source)} must name another host of group redis")
            elif self._peer(source, "redis_replica_of"):
                self.fault(f"redis_replica_of {show(source)} is itself a replica; replicate from a primary")
        members = groups.get("mongodb") or []
        if "mongodb" in self.group_names and len(members) not in (1, 3, 5, 7):
            self.fault(f"group mongodb holds {len(members)} members ({', '.join(members)}); a replica set needs 1, 3, 5 or 7")
        self.check_redis_users()
        self.check_admin_users()
        self.check_backup()
        self.check_monitoring()
        self.check_providers()

    def _peer(self, host: str, name: str) -> Any:
        try:
            return self.peer(host, name)
        except KeyError:
            return None

    def check_redis_users(self) -> None:
        users = self.value("redis_acl_users")
        if "redis" not in self.group_names or not isinstance(users, list):
            return
        names = [user.get("name") for user in users if isinstance(user, Mapping)]
        for name in sorted({name for name in names if names.count(name) > 1 or name == "default"}):
            self.fault(f"redis_acl_users names {show(name)} twice or names the default user (always disabled)")

    def check_admin_users(self) -> None:
        if "common" not in self.roles:
            return
        users = self.value("common_admin_users")
        users = users if isinstance(users, list) else []
        for index, user in enumerate(users):
            if isinstance(user, Mapping) and user.get("state", "present") != "absent" and not user.get("ssh_keys"):
                self.fault(f"common_admin_users[{index}] needs at least one key in ssh_keys (password logins are disabled)")
        over_ssh = self.value("ansible_connection", "ssh") in ("ssh", "ansible.builtin.ssh", "paramiko", "ansible.builtin.paramiko_ssh")
        present = any(isinstance(user, Mapping) and user.get("state", "present") == "present" for user in users)
        user = self.value("ansible_user", "root")
        if over_ssh and user == "root" and not present:
            self.fault("common_admin_users: Ansible connects as root over SSH, which the common role disables; "
                       "define an administrator with an SSH key and connect as that user")
        # sshd's AllowGroups admits the administrators and common_ssh_allow_groups only.
        admins = {entry.get("name") for entry in users if isinstance(entry, Mapping) and entry.get("state", "present") == "present"}
        if over_ssh and user != "root" and user not in admins and not self.effective("common_ssh_allow_groups"):
            self.fault(f"common_ssh_allow_groups: Ansible connects as {show(user)} over SSH, which is not in common_admin_users, "
                       "and common_ssh_allow_groups is empty, so sshd would refuse the next run; list the account in "
                       "common_admin_users or its group in common_ssh_allow_groups")

    def check_backup(self) -> None:
        if "backup" not in self.roles:
            return
        sse = self.effective("backup_s3_sse")
        if self.effective("backup_s3_kms_key_id") and sse != "aws:kms":
            self.fault(f"backup_s3_kms_key_id is set but backup_s3_sse is {show(sse)}; a KMS key needs aws:kms")
        if bool(self.effective("backup_s3_access_key_id")) != bool(self.effective("backup_s3_secret_access_key")):
            self.fault("backup_s3_access_key_id and backup_s3_secret_access_key are set together or both left empty")
        self.check_backup_time_limits()
        self.check_backup_bucket_days()

    def check_backup_bucket_days(self) -> None:
        """The bucket aws_platform builds locks and expires this host's copies by days the inventory
        copies from backup_retention_s3 (group_vars/all, read by the controller, which never sees
        the backup role's retention). Where the inventory names them and the bucket has Object Lock,
        they must fit the retention: a lock shorter than its shortest period leaves copies it still
        keeps deletable by the host's own credentials, and one longer makes the prunes of a host that
        deletes in S3 itself (backup_s3_object_lock false) fail on locked copies; an expiry shorter
        than its longest period deletes copies it still keeps."""
        lock_name, expire_name = "aws_platform_backup_object_lock_days", "aws_platform_backup_expire_days"
        if not {lock_name, expire_name} & set(self.names) or self.effective("aws_platform_backup_object_lock") is False:
            return
        retention = self.effective("backup_retention_s3")
        if not isinstance(retention, Mapping):
            return
        # Keys the inventory leaves out take the S3 tier's defaults, as the role completes them.
        retention = {**TIER_POLICIES["s3"], **retention}
        periods = {key: _whole_number(retention.get(key)) for key in ("daily_days", "weekly_days", "monthly_days")}
        kept = [days for days in periods.values() if days is not None and days > 0]
        # Values that are not numbers are the formats' and argument specifications' to report.
        if not kept or None in periods.values():
            return
        shortest, longest = min(kept), max(kept)
        lock, expire = _whole_number(self.effective(lock_name)), _whole_number(self.effective(expire_name))
        if lock is not None and lock < shortest:
            self.fault(f"{lock_name} ({lock}) is less than the shortest period of backup_retention_s3 ({shortest} days); "
                       "copies the retention still keeps would lose their lock and could be deleted by the backup host's "
                       "credentials: set them equal")
        elif lock is not None and lock > shortest and self.value("backup_s3_object_lock") is False:
            self.fault(f"{lock_name} ({lock}) is more than the shortest period of backup_retention_s3 ({shortest} days) "
                       "and backup_s3_object_lock is false, so the backup program prunes in S3 and its deletions of "
                       "copies still locked would fail: set them equal")
        if expire is not None and expire < longest:
            self.fault(f"{expire_name} ({expire}) is less than the longest period of backup_retention_s3 ({longest} days); "
                       "the bucket's lifecycle rule would delete copies the retention still keeps: set them equal")

    def check_backup_time_limits(self) -> None:
        """Each monitoring host renders the alerts on runs that never end from its own limit: a run
        this host's units let go on longer would page while it may still end well."""
        for monitor in self.groups.get("monitoring") or []:
            value = self._peer(monitor, "monitoring_backup_run_max_minutes")
            allowed = _whole_number(self.defaults.get("monitoring_backup_run_max_minutes") if value is None else value)
            for name, alert in (("backup_run_timeout_minutes", "BackupRunTooLong"),
                                ("backup_verify_timeout_minutes", "BackupVerificationRunTooLong")):
                limit = _whole_number(self.effective(name))
                # A value that is not a number is the formats' to report.
                if allowed is not None and limit is not None and limit > allowed:
                    self.fault(f"{name} ({limit}) is more than monitoring_backup_run_max_minutes ({allowed}) of {monitor}; "
                               f"{alert} would fire while a run may still be going on: raise the monitoring limit or "
                               "lower the backup's")

    def check_providers(self) -> None:
        """A provider the app names needs its account settings; its keys are conditional secrets."""
        if "app" not in self.roles:
            return
        for provider, setting in (("app_sms_provider", "app_sms_username"), ("app_email_provider", "app_email_from")):
            if self.effective(provider) and not self.effective(setting):
                self.fault(f"{setting} is empty but {provider} is {show(self.effective(provider))}; the provider needs it")

    def check_monitoring(self) -> None:
        """Alertmanager's receivers: whole, and outside development never in clear text (the webhook
        URLs hold their tokens, the mails name the platform's faults)."""
        if "monitoring" not in self.group_names:
            return
        if self.effective("monitoring_email_to"):
            for name in ("monitoring_smtp_smarthost", "monitoring_smtp_from"):
                if not self.effective(name):
                    self.fault(f"{name} is empty but monitoring_email_to is set; the email receiver needs both")
        if self.value("env_name") == "development":
            return
        for name in ("monitoring_slack_webhook_url", "monitoring_sms_webhook_url"):
            url = self.effective(name)
            if isinstance(url, str) and url and not url.startswith("https://"):
                self.fault(f"{name} (secret) is not an https:// URL; outside development a webhook's token never "
                           "travels in clear text")
        if self.effective("monitoring_email_to") and self.effective("monitoring_smtp_require_tls") is False:
            self.fault("monitoring_smtp_require_tls is false; outside development alert mails travel over STARTTLS")

    def check_secret_padding(self) -> None:
        """A secret is used whole by the roles (modules, templates) but stripped by what reads it back from an
        env file (the backup program's line.strip()): a manifest key the vault ends with a space or a YAML |
        block's line break would sign with one key and verify with another. Blank ones are missing_secrets'."""
        for name in sorted(set(self.secrets) - self.unused_secrets - self.rules.multiline):
            value = self.value(name)
            if isinstance(value, str) and value.strip() and value != value.strip():
                self.fault(f"{name} (secret) begins or ends with whitespace (a space, tab or line break), which a "
                           "program reading it from an env file strips while the roles pass it whole: remove it in the "
                           "vault (a YAML | block ends with a line break; use a quoted string)")

    def check_tls_files(self) -> None:
        """A role that does not sign its own certificate copies it from the controller: the files must be
        named, or its preflight stops the deploy on the host, after the other tiers have changed."""
        env_name = self.value("env_name")
        for switch, names in self.rules.tls_files.items():
            owners = {role for role, entries in self.specs.items() if switch in entries.get("main", {})}
            if not owners & self.roles:
                continue
            try:
                self_signed = boolean(self.get(switch), strict=True)
                why = f"env_name {show(env_name)}"
            except KeyError:
                # Unset: the roles' default, true in development only.
                self_signed = env_name == "development"
                why = f"its default outside development; env_name {show(env_name)}"
            except TypeError:
                continue  # not a boolean: the argument specification's check names it
            missing = [name for name in names if not self.effective(name)]
            if not self_signed and missing:
                self.fault(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty or unset; with {switch} "
                           f"false ({why}) the role copies its certificate, key and CA from these files on the controller")

    def check_controller_files(self) -> None:
        """A file a role of the host copies from the controller must be there: the role's preflight would
        otherwise stop the deploy on the host, after the tiers before it had changed."""
        inputs = {name for role in self.roles for name in self.specs.get(role, {}).get("main", {})}
        for name in self.rules.controller_files:
            path = self.value(name) if name in inputs else None
            if isinstance(path, str) and path.strip() and not Path(path).is_file():
                self.fault(f"{name} names {path!r}, which is not a file on the controller; the role copies it "
                           "from there (put it beside the inventory, as its comment says)")

    def check_required(self, requirement: Mapping[str, Any], where: str) -> None:
        """One variable of the requirement's any_of must be non-empty on the hosts it concerns: those of
        its groups but none of its except_groups, or without groups the hosts of the roles whose main
        entry point takes the variables."""
        names = list(requirement["any_of"])
        if "groups" in requirement:
            concerned = (bool(set(requirement["groups"]) & set(self.group_names))
                         and not set(requirement.get("except_groups") or []) & set(self.group_names))
        else:
            concerned = bool(self.roles & {role for role, entries in self.specs.items()
                                           if set(names) & set(entries.get("main", {}))})
        if not concerned or any(_filled(self.value(name)) for name in names):
            return
        if len(names) == 1:
            self.fault(f"{names[0]} is empty or unset; {where} it must give {requirement['means']}")
        else:
            self.fault(f"none of {', '.join(names)} is set; {where} one of them must give {requirement['means']}")

    @staticmethod
    def _group_words(requirement: Mapping[str, Any]) -> str:
        groups = " or ".join(requirement["groups"])
        excepted = " or ".join(requirement.get("except_groups") or [])
        return f"on a host of group {groups}" + (f" (and not of {excepted})" if excepted else "")

    def check_environment(self) -> None:
        env_name = self.value("env_name")
        if self.rules.environments and env_name not in self.rules.environments:
            self.fault(f"env_name {show(env_name)} is not one of {', '.join(self.rules.environments)}")
        for requirement in self.rules.required_in_groups:
            self.check_required(requirement, self._group_words(requirement))
        if env_name == "development":
            return
        for requirement in self.rules.required_outside_development:
            self.check_required(requirement, f"outside development (env_name {show(env_name)})")
        # The example vault production ships with (docs/secrets.md) marks every value so: a run that
        # would put one on a server stops here instead.
        for name in sorted(set(self.secrets) - self.unused_secrets):
            value = self.value(name)
            if isinstance(value, str) and value.startswith(EXAMPLE_SECRET_PREFIX):
                self.fault(f"{name} (secret) holds the example vault's value and env_name is {show(env_name)}; "
                           "write your own values into the vault and re-key it (docs/secrets.md)")
        for path in self.vault_files:
            self.fault(f"{path} is not encrypted (it does not start with $ANSIBLE_VAULT) and env_name is "
                       f"{show(env_name)}; encrypt it with ansible-vault encrypt (docs/secrets.md)")
