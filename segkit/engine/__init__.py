"""Training engine: runner, hooks, optimisation."""
