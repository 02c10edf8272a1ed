"""Running the real pipeline in a project folder, as the module fixtures of several test files do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flows.pipeline import pipeline


def run_pipeline_in(root: Path, **params: Any) -> dict[str, Any]:
    """`clarion run` in `root` (its clarion.yaml), returning to the current folder afterwards."""
    cwd = Path.cwd()
    os.chdir(root)
    try:
        return pipeline(config_path="clarion.yaml", **params)
    finally:
        os.chdir(cwd)
