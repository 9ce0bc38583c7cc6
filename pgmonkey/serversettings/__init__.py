"""Kept for the 4.0 import paths (``pgmonkey.serversettings.*``): adapters over
:mod:`pgmonkey.serveradvice`, where the recommendations and the audit live."""
