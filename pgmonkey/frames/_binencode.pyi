# Columns into binary COPY rows (pgmonkey/frames/_binencode.c).
from typing import Any

def encode(n: int, columns: list[tuple[Any, Any, Any, int]], /) -> bytes: ...
