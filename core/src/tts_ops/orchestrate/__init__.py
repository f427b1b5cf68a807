"""Service orchestration: the dependency graph, phased start and stop, the monitor."""
