"""Kept for the 4.0 import paths (``pgmonkey.common.utils.redaction``)."""
