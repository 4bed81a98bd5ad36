"""Lightning callbacks, one behaviour per file, plus the W&B logger factory."""
