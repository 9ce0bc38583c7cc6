"""Kept for the 4.0 import paths (``pgmonkey.tools.connection_code_generator``): adapters only."""
