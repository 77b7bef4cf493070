"""The report fits the window it is read in: at 1400 and 800 px no table hides a column behind a
scroll bar, no chart label falls outside its chart, and no two labels of a chart overlap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.report.test_report_browser import browser  # noqa: F401  (the headless Chromium fixture)

_OVERFLOWING = """() => Array.from(document.querySelectorAll('.table-wrap, figure'))
    .filter(n => n.scrollWidth > n.clientWidth + 1)
    .map(n => (n.querySelector('caption, figcaption') || n).textContent.slice(0, 60))"""

_LABELS = """() => {
  const outside = [], overlapping = [];
  document.querySelectorAll('figure.plot svg').forEach(svg => {
    const box = svg.getBoundingClientRect();
    const texts = Array.from(svg.querySelectorAll('text'))
      .map(t => [t.textContent, t.getBoundingClientRect()]).filter(([, r]) => r.width > 0);
    for (const [text, r] of texts)
      if (r.left < box.left - 1.5 || r.right > box.right + 1.5 || r.top < box.top - 1.5 || r.bottom > box.bottom + 1.5)
        outside.push(text);
    for (let a = 0; a < texts.length; a++) for (let b = a + 1; b < texts.length; b++) {
      const [ra, rb] = [texts[a][1], texts[b][1]];
      const w = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
      const h = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (w > 1 && h > 1) overlapping.push(texts[a][0] + ' / ' + texts[b][0]);
    }
  });
  return {outside, overlapping};
}"""


@pytest.mark.parametrize("kind", ["full", "sizing"])
def test_report_fits_at_1400_and_800_px(browser: Any, shared_report: Callable[[str], Path], kind: str) -> None:  # noqa: F811
    page_path = shared_report(kind)  # conftest.SHARED_RUNS: the full page and a sizing sweep's
    for width in (1400, 800):
        page = browser.new_page(viewport={"width": width, "height": 900})
        try:
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            assert page.evaluate(_OVERFLOWING) == [], f"cut at {width} px"
            labels = page.evaluate(_LABELS)
            assert labels["outside"] == [], f"labels clipped at {width} px"
            assert labels["overlapping"] == [], f"labels collide at {width} px"
        finally:
            page.close()
