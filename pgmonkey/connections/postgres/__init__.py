"""4.0 import paths (``pgmonkey.connections.postgres.*_connection``): re-exports only."""
