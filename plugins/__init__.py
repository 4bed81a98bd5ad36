"""Lightning plugins: the atomic CheckpointIO (its file IO lives in ``utils``)."""
