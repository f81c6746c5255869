"""Releases of the reference API made for deploy tests: a copy of apps/reference-api with one change.

No pytest in here, so a molecule test or a benchmark can use it too:

    from tests.releases import git_repository, make_release, npm_pack
    good = make_release(tmp_path, "1.0.1")                 # a new version, nothing else changed
    crash = make_release(tmp_path, "1.0.2", "crash")       # exits 1 at start, before it listens
    sick = make_release(tmp_path, "1.0.3", "unhealthy")    # /api/health answers 500
    slow = make_release(tmp_path, "1.0.4", "slow")         # every answer 300 ms late (SLOW_MS)
    schema = make_release(tmp_path, "1.0.5", migration="CREATE TABLE t (id int)")  # brings a migration
    probe = make_release(tmp_path, "1.0.6", postinstall="id -un > installed-by")  # an install script
    packed = npm_pack(good, tmp_path)                      # the tarball npm pack makes of it
    repo = git_repository(schema, tmp_path, "v1.0.5")      # a bare repository, the release tagged

Each is a directory the app role takes as app_source. The changes are made by replacing exact
lines of the app's source: when the app changes so that a line is no longer there, making the
release fails, naming it, rather than giving a release that is not broken the way a test expects.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

API = Path(__file__).resolve().parents[1] / "apps" / "reference-api"
FAULTS = ("crash", "unhealthy", "slow")
# Beyond the health gate's p95 threshold (the guide's 200 ms) on every request.
SLOW_MS = 300

# file, the line the change goes after, the lines inserted
# The last middleware before the routes: what goes after it comes before every route but /metrics.
_BEFORE_THE_ROUTES = "  app.use(metrics.middleware);\n"
_CHANGES: dict[str, tuple[str, str, str]] = {
    "crash": ("src/server.js", "'use strict';\n",
              "// A release built to crash at start (tests/releases.py).\n"
              "console.error('Cannot start: this release is built to crash');\nprocess.exit(1);\n"),
    "unhealthy": ("src/app.js", _BEFORE_THE_ROUTES,
                  "  // A release built to fail its health (tests/releases.py): the first matching route answers.\n"
                  "  app.get('/api/health', (req, res) => {\n"
                  "    res.status(500).json({ status: 'unhealthy', error: 'this release is built to fail its health' });\n"
                  "  });\n"),
    "slow": ("src/app.js", _BEFORE_THE_ROUTES,
             "  // A release built to be slow (tests/releases.py): every answer late.\n"
             f"  app.use((req, res, next) => setTimeout(next, {SLOW_MS}));\n"),
}


def make_release(directory: Path, version: str, fault: str | None = None, migration: str | None = None,
                 postinstall: str | None = None) -> Path:
    """A copy of the reference API under `directory` with package.json's version set to `version`,
    given a fault, broken that way, given SQL, bringing it as a migration of its own (after the
    app's, named after the version: `npm run migrate` applies it, or fails on it), and given a shell
    command, with it as the postinstall script npm ci runs; returns its path."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"Cannot make a release with fault {fault!r}: expected one of {', '.join(FAULTS)}")
    copy = directory / f"reference-api-{version}{'-' + fault if fault else ''}"
    shutil.copytree(API, copy, ignore=shutil.ignore_patterns("node_modules", ".git"))
    package = json.loads((copy / "package.json").read_text())
    package["version"] = version
    if postinstall is not None:
        package.setdefault("scripts", {})["postinstall"] = postinstall
    (copy / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    if fault:
        name, after, inserted = _CHANGES[fault]
        source = copy / name
        text = source.read_text()
        if after not in text:
            raise ValueError(f"Cannot make a {fault} release: {name} of {API} no longer has the line {after.strip()!r}")
        source.write_text(text.replace(after, after + inserted, 1))
    if migration is not None:
        (copy / "migrations" / migration_name(version)).write_text(migration + "\n")
    return copy


def migration_name(version: str) -> str:
    """The file of the migration make_release adds for `version` (migrate.js's NNN_name.sql)."""
    return f"900_release_{re.sub('[^a-z0-9]', '_', version.lower())}.sql"


def npm_pack(release: Path, directory: Path) -> Path:
    """The tarball `npm pack` makes of a release, in `directory`. npm pack never includes
    package-lock.json, so the lockfile is first made npm-shrinkwrap.json (`npm shrinkwrap`), which
    it does include: the one way a packed package carries the dependency tree npm ci installs."""
    for command in (["npm", "shrinkwrap"], ["npm", "pack", "--pack-destination", str(directory)]):
        subprocess.run([*command, "--loglevel=error"], cwd=release, check=True, capture_output=True, text=True, timeout=120)
    package = json.loads((release / "package.json").read_text())
    return directory / f"{package['name']}-{package['version']}.tgz"


def git_repository(release: Path, directory: Path, tag: str) -> Path:
    """A bare git repository under `directory` whose one commit, tagged `tag`, holds the release."""
    identity = {"GIT_AUTHOR_NAME": "tests", "GIT_AUTHOR_EMAIL": "tests@chajipoa.invalid", "GIT_COMMITTER_NAME": "tests",
                "GIT_COMMITTER_EMAIL": "tests@chajipoa.invalid"}
    env = dict(os.environ, **identity)
    bare = directory / f"{release.name}.git"
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", f"Release {tag}"], ["tag", tag],
                    ["clone", "-q", "--bare", ".", str(bare)]):
        subprocess.run(["git", *command], cwd=release, env=env, check=True, capture_output=True, text=True, timeout=60)
    return bare
