# Binary COPY rows into columns (pgmonkey/frames/_bindecode.c).
from typing import Any

def decode(
    data: bytes, start: int, kinds: bytes, outputs: list[tuple[Any, Any, Any]], capacity: int, /
) -> tuple[int, int, bool]: ...
