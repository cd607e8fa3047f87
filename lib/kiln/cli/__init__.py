"""The command-line layer: kiln's tasks (baking, versions, servers, roles), their output."""
