# Mitogen for Ansible's linear strategy (chajipoa.platform.linear's), also for connections named by
# their full collection name.
#
# Mitogen replaces a connection with its own only when the play names it by its short name (docker,
# ssh, local). Molecule's docker driver and the development inventory name the lab's connection
# community.docker.docker, and ansible-core's own defaults say ansible.builtin.ssh: under Mitogen's
# stock strategy those runs silently keep the stock connection and gain nothing (docs/performance.md,
# "One module call"). This strategy maps those full names to the short ones before Mitogen decides.
# Tasks on the controller itself (connection local) keep Ansible's own connection: Mitogen's gains
# nothing there, and its async jobs are not found by async_status, on which molecule's create and
# destroy playbooks wait.
# Enabled by `make ... LAB_STRATEGY=mitogen` (the Makefile sets ANSIBLE_STRATEGY_PLUGINS to this
# directory and ANSIBLE_STRATEGY=mitogen_linear).
from __future__ import annotations

import ansible_mitogen.affinity
import ansible_mitogen.loaders
import ansible_mitogen.planner
import ansible_mitogen.strategy
from ansible.collections.list import list_collection_dirs
from ansible.playbook.play_context import PlayContext

SHORT_NAMES = {
    "community.docker.docker": "docker",
    "ansible.builtin.ssh": "ssh",
    "ansible.legacy.ssh": "ssh",
}

_mitogen_connection_get = ansible_mitogen.strategy.wrap_connection_loader__get_with_context


def connection_get_by_short_name(name, *args, **kwargs):
    if args and isinstance(args[0], PlayContext) and args[0].connection in SHORT_NAMES:
        args[0].connection = SHORT_NAMES[args[0].connection]
    return _mitogen_connection_get(SHORT_NAMES.get(name, name), *args, **kwargs)


# Mitogen installs its loader wrapper from this module attribute when the strategy starts, and the
# wrapper reads the list of connections it replaces at each call.
ansible_mitogen.strategy.wrap_connection_loader__get_with_context = connection_get_by_short_name
ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS = tuple(
    name for name in ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS if name != "local")

# Before it runs a collection's module, Mitogen's planner lists the directory of every installed
# collection (reading the manifest of each of the hundred or so the ansible package brings) and
# keeps the answer in a cache of the process. Ansible forks a new worker for every task and host, so
# that cache never serves a second call: the listing was 46% of the workers' time in a no-op run
# (py-spy, docs/performance.md). Listed once here, in the strategy's process, and inherited by every
# worker it forks. The collections do not change during a run.
_COLLECTION_DIRS: tuple[str, ...] = ()


def add_collection_dirs(invocation):
    invocation._extra_sys_paths.update(_COLLECTION_DIRS)


ansible_mitogen.planner._load_collections = add_collection_dirs

# Mitogen pins ansible-playbook, its workers and its connection multiplexer to fixed CPUs. With fewer
# than four CPUs it keeps one for the multiplexer and pins ansible-playbook and every worker to the
# rest: on a machine with two, the whole controller ran on one CPU while the multiplexer's sat nearly
# idle (docs/performance.md, "A larger fleet": the 30-host no-op ran 1.4x faster with the kernel
# placing processes). With more CPUs it pins each worker to one CPU of its own
# choosing, whatever else (the lab's containers, an execution environment's neighbours) runs there.
# Mitogen's base policy places nothing, and the kernel places processes as it does for Ansible's
# own strategies.
ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

# The collection's linear strategy: Ansible's, with workers forked from a frozen heap (its documentation).
Linear = ansible_mitogen.loaders.strategy_loader.get("chajipoa.platform.linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Linear):
    def __init__(self, *args, **kwargs):
        global _COLLECTION_DIRS  # pylint: disable=global-statement
        _COLLECTION_DIRS = tuple(path.decode("utf-8") for path in list_collection_dirs())
        super().__init__(*args, **kwargs)
