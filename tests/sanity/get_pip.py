"""Stand-in for ansible-test's pip bootstrap script, whose download host is unreachable here.

ansible-test creates each sanity virtual environment without pip and runs a cached get-pip.py in it
with the pip version to install. This does what get-pip.py does, with the pip wheel that ensurepip
bundles with this Python instead of one embedded in the script: pip then installs the requested
version from the package index.
"""

from __future__ import annotations

import ensurepip
import glob
import os
import sys

# get-pip.py's own options: it installs neither setuptools nor wheel unless asked to.
GET_PIP_OPTIONS = ('--no-setuptools', '--no-wheel')


def main() -> int:
    bundled = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), '_bundled', 'pip-*.whl'))

    if not bundled:
        print(f'Cannot bootstrap pip: no pip wheel bundled with the Python at {sys.executable}', file=sys.stderr)
        return 1

    sys.path.insert(0, bundled[0])

    from pip._internal.cli.main import main as pip_main

    arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_OPTIONS]

    return pip_main(['install', '--upgrade', '--force-reinstall'] + arguments)


if __name__ == '__main__':
    sys.exit(main())
