"""launcher: runs a plan (agents, workers, supervisor, run directory, console output)."""
