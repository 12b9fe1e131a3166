"""cluster: the launch plan as data (hosts, ranks, environments, rank tables); no processes."""
