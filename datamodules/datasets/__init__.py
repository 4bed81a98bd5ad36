"""Map-style torch Datasets the DataModules hand to their loaders: in-memory arrays and image files, each exposing its labels."""
