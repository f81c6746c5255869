#!/usr/bin/env bash
# ansible-test sanity on the collection as `ansible-galaxy collection build` packages it: galaxy.yml's
# build_ignore is the one list of what in this repository is not collection content (inventories,
# lab, bench, molecule), so sanity and the artifact agree on what the collection is.
# Run by `make lint`; alone, with the venv's bin on PATH. Extra arguments go to ansible-test, e.g.
# `tests/sanity/run.sh --test pylint`.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$root/.cache/sanity
# ansible-test only tests a collection that sits at .../ansible_collections/<namespace>/<name> and
# resolves symlinks first, so the symlink under collections/ cannot serve: the build is unpacked here.
collection=$work/ansible_collections/chajipoa/platform
python_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

rm -rf "$work/ansible_collections" "$work/build"
mkdir -p "$collection" "$work/build"
(cd "$root" && ansible-galaxy collection build --output-path "$work/build" >/dev/null)
tar -xzf "$work/build"/chajipoa-platform-*.tar.gz -C "$collection"

# ansible-test lists files with git when it finds a .git directory, searching upwards; without one of
# its own the copy would be listed through the enclosing checkout, where .cache is ignored: no files.
git -C "$collection" init --quiet

# ansible-test keeps one virtual environment per sanity test (pylint, pep8, ...) under
# ~/.ansible/test/venv; a HOME of our own keeps them in .cache, reused between runs.
export HOME=$work/home
# Those environments start without pip, and ansible-test's pip bootstrap script lives on a host this
# network does not reach; tests/sanity/get_pip.py does its job from the pip wheel Python bundles.
pip_version=$(python3 -c 'from ansible_test._internal.python_requirements import get_venv_packages; from ansible_test._internal.host_configs import NativePythonConfig; print(get_venv_packages(NativePythonConfig(version="'"$python_version"'"))["pip"])')
install -D -m 0644 "$root/tests/sanity/get_pip.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"

cd "$collection"
# --python: the venv's own Python; no other interpreter (nor Docker Hub for ansible-test's images) here.
exec ansible-test sanity --python "$python_version" "$@"
