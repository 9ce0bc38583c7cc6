"""The commented YAML template written by ``pgmonkey pgconfig create``."""

from __future__ import annotations

from importlib.resources import files


def config_template() -> str:
    """The full, commented config template (the 4.0 template plus ``sync_settings``)."""
    return files("pgmonkey.config").joinpath("template.yaml").read_text(encoding="utf-8")
