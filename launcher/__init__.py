"""wrn-launch's launcher: runs a plan (``cluster``) of training workers (``wrn``) and supervises it.

Subpackages by concern: ``commands`` (one module per subcommand), ``session`` (a launch's
inputs, resources and attempts), ``backends`` (local, SSH, Slurm), ``agent`` (the node agent and
its handle), ``supervise`` (the monitor and its policies), ``rundir`` (the run directory and its
record) and ``ui`` (what the user sees). docs/ARCHITECTURE.md walks through them.
"""

#: The command's name, as every message of the launcher writes it.
PROG = "wrn-launch"
