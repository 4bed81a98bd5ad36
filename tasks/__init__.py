"""Tasks: what each entry script does (train, evaluate, predict, audit, prepare shards), built from one composed config."""
