# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""Compiled code kept on a host between runs, for the Python interpreter Mitogen starts there.

Mitogen for Ansible starts one interpreter on each host per run and sends it, as source, every
module it imports: Mitogen's own, ansible-core's module_utils and each module that runs. The
interpreter compiled all of them anew on every run, and Python's own cache of compiled files does
not apply to modules that arrive as source: 0.25 s of the 0.86 s a host worked in a no-op run of the
base system, under Python's profiler (docs/performance.md, "A larger fleet"). Here the code compiled
from a source is written to a directory of the account on the host, as Python writes its own
compiled files, and read back when the same source comes again.

The strategy chajipoa.platform.mitogen_linear sends this file's text to each interpreter Mitogen
starts and runs it there before anything else, so it imports only what any such interpreter can:
Python's standard library, and Mitogen's modules, which the controller sends. It replaces `compile`
in the two places that compile what the controller sends: Mitogen's importer (mitogen.core) and the
runner of Ansible's modules (ansible_mitogen.runner).

The key is the source, the file name the code reports, the optimisation level and the interpreter's
version and bytecode format. Only what Mitogen compiles is kept: source text with no compiler flags,
compiled without the caller's __future__ flags (dont_inherit), as both callers ask. The directory
is the account's own (~/.cache/chajipoa/mitogen-bytecode, mode 0700); where it cannot be made, or
another account could write to it, the interpreter compiles as before. Each entry is a few
kilobytes; a source that changes (a new release of a module) leaves its old entry, which the next
run of this file removes once it has not been read for CACHE_DAYS days.
"""
# No __future__ import here: compile() called with dont_inherit=False takes the flags of the code
# that calls it, and this module's code is what calls it.
import contextlib
import hashlib
import importlib.util
import marshal
import os
import sys
import tempfile
import time
from typing import Optional

CACHE_DAYS = 30
_BUILTIN_COMPILE = compile


def directory() -> Optional[str]:
    """The account's cache directory, made if missing; None where it cannot be made or is not the
    account's alone."""
    home = os.path.expanduser("~")
    if not os.path.isabs(home):
        return None
    path = os.path.join(home, ".cache", "chajipoa", "mitogen-bytecode")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        status = os.stat(path)
    except OSError:
        return None
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        return None
    return path


def cached_compile(path: str):
    """compile(), keeping the code it makes from a source (str or bytes) in directory path."""
    interpreter = (sys.version + importlib.util.MAGIC_NUMBER.hex()).encode()

    def compile_cached(source, filename, mode, flags=0, dont_inherit=False, optimize=-1, **more):
        if more or flags or not dont_inherit or not isinstance(source, (str, bytes)):
            return _BUILTIN_COMPILE(source, filename, mode, flags, dont_inherit, optimize, **more)
        digest = hashlib.sha256(interpreter)
        digest.update(repr((str(filename), mode, optimize, type(source).__name__)).encode())
        digest.update(source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source)
        entry = os.path.join(path, digest.hexdigest())
        try:
            with open(entry, "rb") as stored:
                code = marshal.loads(stored.read())
            os.utime(entry)
            return code
        except (OSError, EOFError, ValueError, TypeError):
            pass
        code = _BUILTIN_COMPILE(source, filename, mode, flags, dont_inherit, optimize)
        try:
            descriptor, temporary = tempfile.mkstemp(dir=path)
        except OSError:
            return code
        try:
            with os.fdopen(descriptor, "wb") as written:
                written.write(marshal.dumps(code))
            os.replace(temporary, entry)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return code

    return compile_cached


def prune(path: str, days: int = CACHE_DAYS) -> None:
    """Removes the entries not read for `days` days (reading one touches it)."""
    oldest = time.time() - days * 86400
    try:
        entries = os.scandir(path)
    except OSError:
        return
    with entries:
        for entry in entries:
            try:
                if entry.stat().st_mtime < oldest:
                    os.unlink(entry.path)
            except OSError:
                pass


def install() -> None:
    """Compiles through the cache in Mitogen's importer and Ansible's module runner."""
    path = directory()
    if path is None:
        return
    prune(path)
    compile_cached = cached_compile(path)
    import mitogen.core  # pylint: disable=import-outside-toplevel
    mitogen.core.Importer.exec_module.__globals__["compile"] = compile_cached
    import ansible_mitogen.runner  # pylint: disable=import-outside-toplevel
    ansible_mitogen.runner.compile = compile_cached


if __name__ == "__mitogen_bytecode__":
    install()
