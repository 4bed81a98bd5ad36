"""Small shared helpers, the bottom layer (they import only each other): atomic writes and checkpoint IO, user-error types, optional dependencies, names, locks, processes, CPU counts."""
