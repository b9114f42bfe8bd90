"""Running many targets: the run's tasks, worker isolation and the configuration file."""
