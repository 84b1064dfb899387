"""The airlock: the one sanctioned way out of a project, with automatic checks and two-person review."""
