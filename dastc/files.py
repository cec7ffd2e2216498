"""Writing small state files so that a killed process never leaves half of one behind."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json_atomic(path: Path, payload: object, indent: int | None = None) -> None:
    """``payload`` as JSON into a temporary file beside ``path``, then renamed over it: readers see the old file
    or the whole new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=indent))
    os.replace(tmp, path)
