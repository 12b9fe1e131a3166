"""The one exception type of the planning layer."""

from __future__ import annotations


class PlanError(ValueError):
    """A user-facing problem with a launch request (devices, backend, ports, rank table...).

    ``str()`` is the whole message: one paragraph saying what is wrong, where, and how to fix
    it. The command-line front end prints it as is and exits with status 2; nothing has been
    started when it is raised.
    """
