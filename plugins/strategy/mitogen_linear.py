# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
from __future__ import annotations

DOCUMENTATION = r"""
---
name: mitogen_linear
short_description: Mitogen for Ansible's linear strategy, for connections named by their collection name too
version_added: 0.9.0
author: ChajiPoa Infrastructure engineers (!UNKNOWN)
description:
  - Mitogen for Ansible (PyPI C(mitogen)) keeps one Python interpreter per host and hands it every
    module call, where Ansible starts a new one for each; a module call on a lab host takes a quarter
    of the time (C(docs/performance.md) in the repository).
  - Mitogen replaces a connection with its own only when the play names it by its short name
    (C(docker), C(ssh), C(local)). Molecule's docker driver and the development inventory name the
    lab's connection C(community.docker.docker), and ansible-core's own default is
    C(ansible.builtin.ssh); under Mitogen's stock strategy those runs silently keep the stock
    connection and gain nothing. This strategy maps those full names to the short ones first.
  - Tasks on the controller itself (connection C(local)) keep Ansible's own connection, as Mitogen's
    gains nothing there, and its async jobs are not found by C(async_status).
  - It is C(chajipoa.platform.linear) (workers forked from a frozen heap) under Mitogen's mix-in, and
    lets the kernel place processes on CPUs where Mitogen would pin them.
  - It gives each action plugin one class with Mitogen's mix-in for the whole run, where Mitogen's
    own strategy makes a new class every time a task on a host asks for its plugin; kept by the
    frozen heap, those made every worker slower the longer the run and the larger the fleet. And it
    looks each plugin up once per name in the run, where Ansible asks the plugin loader for a task's
    plugin again on every host.
  - Mitogen sends the interpreter it starts on a host every module as source, and the interpreter
    compiled them all again on every run, a quarter of a host's work in a no-op run. Each
    interpreter this strategy starts first installs a cache of compiled code in the connecting
    account's C(~/.cache/chajipoa/mitogen-bytecode) (mode 0700; C(plugins/plugin_utils/mitogen_bytecode.py)
    in the collection), and the next run reads the code back. Entries not read for 30 days are removed.
    Where the directory cannot be made, or others may write to it, the interpreter compiles as before.
  - Mitogen forks, as the interpreter it starts on a host starts, a clean copy of it to fork each
    isolated call from (async tasks, modules that leak state such as dnf, tasks with
    C(mitogen_task_isolation=fork)), on every host and run whether such a call comes or not. Here
    the host's interpreter makes no copy; the first isolated call on the host starts a new
    interpreter from it, as clean, and every isolated call of the run is forked from that one
    (C(plugins/plugin_utils/mitogen_isolation.py) in the collection). A run with isolated calls pays
    one interpreter's start on each host that has them instead of a fork; a run without pays nothing.
requirements:
  - mitogen (requirements.txt pins the version the project tests with)
notes:
  - Select it with C(ANSIBLE_STRATEGY=chajipoa.platform.mitogen_linear) (C(make dev) and molecule do,
    through C(lab/strategy/mitogen.env)), C(strategy) in C(ansible.cfg), or a play's C(strategy)
    keyword. In AWX, the execution environment built from C(execution-environment.yml) has Mitogen;
    a job template selects this strategy with that environment variable.
  - Mitogen for Ansible supports only some ansible-core versions; the project tests the pair its
    requirements pin.
"""

import functools
from pathlib import Path

from ansible.collections.list import list_collection_dirs
from ansible.errors import AnsibleError
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import get_with_context_result
from ansible.plugins.strategy import StrategyBase

SHORT_NAMES = {
    "community.docker.docker": "docker",
    "ansible.builtin.ssh": "ssh",
    "ansible.legacy.ssh": "ssh",
}

# Before it runs a collection's module, Mitogen's planner lists the directory of every installed
# collection (reading the manifest of each of the hundred or so the ansible package brings) and
# keeps the answer in a cache of the process. Ansible forks a new worker for every task and host, so
# that cache never serves a second call: the listing was 46% of the workers' time in a no-op run
# (py-spy, docs/performance.md). Listed once, in the strategy's process, and inherited by every
# worker it forks. The collections do not change during a run.
_COLLECTION_DIRS: tuple[str, ...] = ()


@functools.cache
def _mitogen_linear() -> type:
    """The strategy's class, and Mitogen patched for it, at the first run that selects it: Mitogen is
    imported only then, so the collection loads where Mitogen is not installed (ansible-doc, a
    controller that never selects this strategy)."""
    try:
        import ansible_mitogen.affinity  # pylint: disable=import-outside-toplevel
        import ansible_mitogen.loaders  # pylint: disable=import-outside-toplevel
        import ansible_mitogen.mixins  # pylint: disable=import-outside-toplevel
        import ansible_mitogen.planner  # pylint: disable=import-outside-toplevel
        import ansible_mitogen.services  # pylint: disable=import-outside-toplevel
        import ansible_mitogen.strategy  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise AnsibleError(f"Cannot use the strategy chajipoa.platform.mitogen_linear: {error} "
                           "(Mitogen for Ansible; pip install -r requirements.txt)") from None

    mitogen_connection_get = ansible_mitogen.strategy.wrap_connection_loader__get_with_context

    def connection_get_by_short_name(name, *args, **kwargs):
        if args and isinstance(args[0], PlayContext) and args[0].connection in SHORT_NAMES:
            args[0].connection = SHORT_NAMES[args[0].connection]
        return mitogen_connection_get(SHORT_NAMES.get(name, name), *args, **kwargs)

    # Mitogen installs its loader wrapper from this module attribute when the strategy starts, and
    # the wrapper reads the list of connections it replaces at each call. (setattr: ansible-doc
    # reads this file for its DOCUMENTATION and warns on attribute assignments.)
    setattr(ansible_mitogen.strategy, "wrap_connection_loader__get_with_context", connection_get_by_short_name)
    setattr(ansible_mitogen.strategy, "REDIRECTED_CONNECTION_PLUGINS", tuple(
        name for name in ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS if name != "local"))

    def add_collection_dirs(invocation):
        invocation._extra_sys_paths.update(_COLLECTION_DIRS)

    setattr(ansible_mitogen.planner, "_load_collections", add_collection_dirs)

    # Mitogen gives every action plugin its mix-in by making a new class each time Ansible asks for
    # the plugin: in the strategy, once for every task and host. The strategy's frozen heap (see
    # chajipoa.platform.linear) puts each of those classes, cyclic garbage, in the oldest generation,
    # which only a full collection clears, so they piled up through a run (some 700 on 30 hosts of
    # the base system). Every worker then paid for them: its connection's first isinstance() against
    # the mix-in walked every one of that class's subclasses, more the longer the run, so a host's
    # tasks cost more the larger the fleet. Made once per plugin class here; a class is all the
    # loader's callers get, and none of them changes it.
    adorned = functools.cache(lambda name, klass: type(name, (ansible_mitogen.mixins.ActionModuleMixin, klass), {}))

    # Found once per name and collection list: Ansible asks for a task's plugin on every host, in
    # ansible-playbook and again in the worker, and the plugins do not change during a run.
    @functools.cache
    def action_class(name, collection_list):
        return ansible_mitogen.loaders.action_loader__get_with_context(
            name, class_only=True, collection_list=None if collection_list is None else list(collection_list))

    def action_get_with_one_class_per_plugin(name, *args, **kwargs):
        name = "mitogen_fetch" if name == "fetch" else name
        collection_list = kwargs.pop("collection_list", None)
        klass, context = action_class(name, None if collection_list is None else tuple(collection_list))
        if not klass:
            return get_with_context_result(None, context)
        action = adorned(str(name), klass)
        return get_with_context_result(action if kwargs.pop("class_only", False) else action(*args, **kwargs), context)

    setattr(ansible_mitogen.strategy, "wrap_action_loader__get_with_context", action_get_with_one_class_per_plugin)

    # Mitogen pins ansible-playbook, its workers and its connection multiplexer to fixed CPUs. With
    # fewer than four CPUs it keeps one for the multiplexer and pins ansible-playbook and every worker
    # to the rest: on a machine with two, the whole controller ran on one CPU while the multiplexer's
    # sat nearly idle (docs/performance.md, "A larger fleet": the 30-host no-op ran 1.4x faster with
    # the kernel placing processes). With more CPUs it pins each worker to one CPU of its own
    # choosing, whatever else (the lab's containers, an execution environment's neighbours) runs
    # there. Mitogen's base policy places nothing, and the kernel places processes as it does for
    # Ansible's own strategies.
    setattr(ansible_mitogen.affinity, "policy", ansible_mitogen.affinity.Policy())

    # The first calls in every interpreter Mitogen starts on a host, before Mitogen's own: keep
    # compiled code on the host between runs, and start the interpreter isolated tasks are forked
    # from only when one comes (plugins/plugin_utils/mitogen_bytecode.py and mitogen_isolation.py
    # say why). A context's calls run in the order they were sent, so both are in place for
    # everything after them.
    first_calls = {name: (Path(__file__).parents[1] / "plugin_utils" / f"{name}.py").read_text(encoding="utf-8")
                   for name in ("mitogen_bytecode", "mitogen_isolation")}
    send_module_forwards = ansible_mitogen.services.ContextService._send_module_forwards

    def start_with_first_calls(service, context):
        send_module_forwards(service, context)
        for name, text in first_calls.items():
            context.call_no_reply(exec, text, {"__name__": f"__{name}__"})

    setattr(ansible_mitogen.services.ContextService, "_send_module_forwards", start_with_first_calls)

    # The collection's linear strategy: Ansible's, with workers forked from a frozen heap (its documentation).
    linear = ansible_mitogen.loaders.strategy_loader.get("chajipoa.platform.linear", class_only=True)
    return type("MitogenLinear", (ansible_mitogen.strategy.StrategyMixin, linear), {})


class StrategyModule(StrategyBase):  # pylint: disable=abstract-method
    """What Ansible loads (a strategy must be a StrategyBase) and makes; it becomes an instance of
    _mitogen_linear()'s class as it starts. (Ansible's loader makes the instance with object.__new__
    and calls __init__, so the class cannot be chosen any earlier.)"""

    def __init__(self, *args, **kwargs):  # pylint: disable=super-init-not-called
        global _COLLECTION_DIRS  # pylint: disable=global-statement
        self.__class__ = _mitogen_linear()
        _COLLECTION_DIRS = tuple(path.decode("utf-8") for path in list_collection_dirs())
        self.__init__(*args, **kwargs)  # pylint: disable=non-parent-init-called
