# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Jinja's compiled templates, shared by the workers of one ansible-playbook run.

ansible-core keeps no compiled template: it compiles every template and condition from its source
each time it evaluates one, and each task and host runs in a worker of its own that ends with the
task. So the same template was compiled again for every host: 8.5 of the 25.6 CPU seconds of the
workers of a no-op run of the base system on 30 hosts went to Jinja's compiler, 5,467 compilations
(docs/performance.md). Shared, a template is compiled once in the run, by the first worker that
needs it, and written to a directory of the run in marshal's format, as Python writes its own
compiled files; every other worker loads it. The strategy chajipoa.platform.linear turns this on,
in Ansible's temporary directory of the run, which ansible-playbook removes as it ends.

A compiled template depends on its source and on how Jinja was set to read it: the environment's
delimiters and whitespace settings (a template's overrides), whether Ansible escapes backslashes
(only for the templates it compiles itself, not for those Jinja includes at run time) and, for
templates from files, their name. All of it is in the key. The configuration that shapes the code
otherwise (Ansible's embedded-template support, Jinja's and Ansible's versions) is that of the one
run the directory belongs to.
"""
from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import jinja2
from ansible._internal._templating._jinja_bits import _TEMPLATE_OVERRIDE_FIELD_NAMES, AnsibleEnvironment, _TemplateCompileContext

_JINJA_COMPILE = jinja2.Environment.compile
_directory: Optional[Path] = None


def share(parent: str) -> Optional[Path]:
    """Shares compiled templates, from now on, between this process and those it forks, through a new
    directory in parent, and returns it; a later call keeps the first directory. Where no directory
    can be made, every process compiles for itself, as under Ansible's own strategies, and None."""
    global _directory  # pylint: disable=global-statement
    if _directory is None:
        try:
            _directory = Path(tempfile.mkdtemp(prefix="templates-", dir=parent))
        except OSError:
            return None
        AnsibleEnvironment.compile = _compile_shared
    return _directory


def key(environment: jinja2.Environment, source: Any, name: Optional[str], filename: Optional[str], defer_init: bool) -> Optional[str]:
    """The file name of source's compiled code under environment's settings; None when source cannot
    be named by its content (a parsed expression holding an object that prints its address)."""
    if isinstance(source, str):
        text = "source\0" + source
    else:
        text = "nodes\0" + repr(source)
        if " object at 0x" in text:
            return None
    compiling = _TemplateCompileContext.current(optional=True)
    settings = [repr(getattr(environment, field)) for field in _TEMPLATE_OVERRIDE_FIELD_NAMES]
    parts = [type(environment).__qualname__, *settings, repr(compiling and compiling.escape_backslashes), repr(name), repr(filename),
             repr(defer_init), text]
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _compile_shared(self, source, name=None, filename=None, raw=False, defer_init=False):
    # raw asks for the generated Python source, and a template being debugged writes it to a file.
    name_in_cache = None if raw or self._debuggable_template_source else key(self, source, name, filename, defer_init)
    if name_in_cache is None or _directory is None:
        return _JINJA_COMPILE(self, source, name, filename, raw, defer_init)
    path = _directory / name_in_cache
    try:
        return marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        pass
    code = _JINJA_COMPILE(self, source, name, filename, raw, defer_init)
    # Written aside and renamed: a worker reading at the same time finds the whole file or none.
    partial = path.with_name(f"{name_in_cache}.{os.getpid()}")
    try:
        partial.write_bytes(marshal.dumps(code))
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    return code
