"""Runs to and from other tools: importers write run directories that every command opens; export writes
one checkpoint in another tool's format."""
