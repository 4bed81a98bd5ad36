"""Test helpers: generated data in the published formats, recorders injected into runs, subprocess runners."""
