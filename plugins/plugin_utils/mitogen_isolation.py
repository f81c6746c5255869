# Copyright: ChajiPoa Infrastructure engineers
# Apache License 2.0 (see galaxy.yml)
"""The interpreter that isolated tasks are forked from, started on a host only when one comes.

Mitogen for Ansible runs a host's module calls in the one interpreter it starts there, except the
calls that must not share it: async tasks, modules Mitogen lists as leaking state (dnf, firewalld)
and tasks with mitogen_task_isolation=fork. Each of those runs in a fork of a clean interpreter,
which Mitogen forks from the host's as that starts, on every host and run, whether any such call
comes or not. That copy starts its own router and threads and reports to the controller: in a
no-op run of the base system, which has no such call, some 18 ms of each host's own CPU, and 20 to
40 ms of the lab machine's a host with the controller's share (docs/performance.md, "A larger fleet").

Here the host's interpreter makes no copy as it starts. The first isolated call on the host starts
a new interpreter from it (Mitogen's local method), as clean as the copy was, and every isolated
call of the run is forked from that one, as it was from the copy. A run with isolated calls pays
one interpreter's start on each host that has them (about 0.15 s of its CPU) instead of a fork.

The strategy chajipoa.platform.mitogen_linear sends this file's text to each interpreter Mitogen
starts and runs it there before Mitogen's first call, which is the one that made the copy.
"""
import functools


def start_clean_interpreter_on_demand() -> None:
    import mitogen.parent  # pylint: disable=import-outside-toplevel
    import ansible_mitogen.target  # pylint: disable=import-outside-toplevel

    mitogen_init_child = ansible_mitogen.target.init_child
    mitogen_spawn_isolated_child = ansible_mitogen.target.spawn_isolated_child
    started = []

    @functools.wraps(mitogen_init_child)
    def init_child(econtext, *args, **kwargs):
        # With FORK_SUPPORTED false, Mitogen's init_child makes no copy and reports none, and the
        # controller then asks this interpreter for each isolated call (spawn_isolated_child below).
        forks, ansible_mitogen.target.FORK_SUPPORTED = ansible_mitogen.target.FORK_SUPPORTED, False
        try:
            return mitogen_init_child(econtext, *args, **kwargs)
        finally:
            ansible_mitogen.target.FORK_SUPPORTED = forks

    @functools.wraps(mitogen_spawn_isolated_child)
    def spawn_isolated_child(econtext):
        if not started:
            mitogen.parent.upgrade_router(econtext)
            started.append(econtext.router.local())
        # Mitogen's own spawn_isolated_child, run in the started interpreter, forks that one.
        return started[0].call(mitogen_spawn_isolated_child)

    ansible_mitogen.target.init_child = init_child
    ansible_mitogen.target.spawn_isolated_child = spawn_isolated_child


if __name__ == "__mitogen_isolation__":
    start_clean_interpreter_on_demand()
