"""The subcommands of wrn-launch: one module each, with ``HELP`` (its line in ``wrn-launch
--help``), ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> exit status``;
``launch`` holds the top level's launch flags. ``launcher.cli`` assembles them."""

#: The subcommands, in the order ``--help`` lists them (each a module of this package).
COMMANDS = ("model", "ranktable", "eval", "export", "predict", "config", "sbatch", "data", "runs", "report", "logs")
