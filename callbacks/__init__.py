"""Lightning callbacks, one behaviour per file: metrics.json, W&B visuals, run reports, checkpoints, progress."""
