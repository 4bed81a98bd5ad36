"""Loggers: the W&B logger factory (online with credentials, offline otherwise) and the run id that survives a resume."""
