"""How a job runs: the wrapper around every entry script's task, DDP child relaunch, per-process set-up, one-line user errors, sweeps (objective, summary) and the OmegaConf resolvers."""
