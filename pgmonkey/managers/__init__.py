"""Kept for the 4.0 import paths (``pgmonkey.managers.pgconnection_manager``): re-exports only."""
