"""notebooks/11_explore.ipynb as a reader sees it: HTML by nbconvert, drawn by headless Chromium.

The stored outputs of the notebook are converted to HTML and rendered; the screenshot must
show the plan tree (its time bars, in their own colours) and the plots (matplotlib's bars).
The crops of both are written next to the screenshot in pytest's temporary folder; copies
are kept in ``tests/artifacts/``. Skipped where Chromium, nbconvert or Pillow is missing
(``apt-get install chromium``, ``pip install nbconvert``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "11_explore.ipynb"
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)

# Colours drawn by the plan tree (exclusive and inclusive time bars) and by matplotlib (C0).
PLAN_DARK = (0x1F, 0x5F, 0xBF)
PLAN_LIGHT = (0xBC, 0xD4, 0xF6)
PLAN_TRACK = (0xF1, 0xF1, 0xF1)  # behind the bars, also in rows whose bars are empty
PLOT_BLUE = (0x1F, 0x77, 0xB4)
WIDTH, HEIGHT = 1280, 16000


def _rows_with(image: Any, colour: tuple[int, int, int]) -> list[int]:
    """The y of every pixel row holding at least 10 (of every other) pixels of *colour*."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    data = rgb.load()
    rows = []
    for y in range(height):
        if sum(1 for x in range(0, width, 2) if data[x, y] == colour) >= 10:
            rows.append(y)
    return rows


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")
def test_plan_tree_and_plots_render_in_a_browser(tmp_path: Path) -> None:
    nbconvert = pytest.importorskip("nbconvert")
    image_module = pytest.importorskip("PIL.Image")
    import nbformat

    html, _resources = nbconvert.HTMLExporter().from_notebook_node(
        nbformat.read(NOTEBOOK, as_version=4)
    )
    page = tmp_path / "11_explore.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "11_explore.png"
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    image = image_module.open(shot)
    dark, light = _rows_with(image, PLAN_DARK), _rows_with(image, PLAN_LIGHT)
    plots = _rows_with(image, PLOT_BLUE)
    assert dark and light, "no plan tree time bars in the rendered page"
    assert len(plots) > 100, "no plot drawn in the rendered page"
    # The first plan tree (its bars) comes before the first plot, as in the notebook.
    assert min(dark) < min(plots)
    # One crop per plan tree (its bar rows, grouped), and one of the first plot.
    bar_rows = sorted(set(light) | set(_rows_with(image, PLAN_TRACK)))
    trees = [run for run in _clusters(bar_rows) if any(run[0] <= y <= run[1] for y in light)]
    assert len(trees) >= 2, "the notebook shows a plan tree without and with --analyze"
    for name, (start, end) in zip(("explore-plan", "explore-plan-analyzed"), trees, strict=False):
        image.crop((0, max(start - 60, 0), WIDTH, end + 30)).save(tmp_path / f"{name}.png")
    first = min(plots)
    image.crop((0, max(first - 80, 0), WIDTH, first + 420)).save(tmp_path / "explore-plot.png")


def _clusters(rows: list[int], gap: int = 40) -> list[tuple[int, int]]:
    """Runs of rows no more than *gap* apart, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for y in rows:
        if runs and y - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], y)
        else:
            runs.append((y, y))
    return runs
