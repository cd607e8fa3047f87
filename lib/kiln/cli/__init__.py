"""The command-line layer: text and JSON output of kiln's tasks."""
