"""``python -m pgmonkey``: the same CLI as the ``pgmonkey`` command."""

from __future__ import annotations

from pgmonkey.cli import main

if __name__ == "__main__":
    main()
