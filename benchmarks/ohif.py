"""OHIF in headless Chromium: from opening a never-viewed study to a viewport with an image.

The server runs as ``synthpacs serve`` with its defaults (the GAN, prefetch
on) and serves the OHIF Viewer at /ohif/ (``make ohif`` installs it). Each
study is cold: never retrieved, listed by a study-level QIDO that names no
study (so nothing prefetches it). The clock starts when the browser is sent
to the viewer URL and stops when the viewport's canvas holds an image (the
OHIF test's criterion: over 5 % of its pixels lit, spread over 10 grey
levels, ``tests/e2e/viewport.py``) in the browser the OHIF test drives (``tests/e2e/cdp.py``).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from .dicomweb import JSON, _Server, _value
from .on_demand import _p50

Row = tuple[str, str, str]
TESTS = Path(__file__).resolve().parent.parent / "tests"


def run(quick: bool = False) -> list[Row]:
    chromium = shutil.which("chromium")
    if chromium is None or not (Path(__file__).resolve().parent.parent / "third_party" / "ohif").is_dir():
        return [("OHIF time to first image", "not measured", "needs chromium and OHIF (make system-tools ohif)")]
    sys.path.insert(0, str(TESTS))  # the Chrome DevTools driver lives beside the OHIF test
    from e2e.cdp import Browser
    from e2e.viewport import DRAWN

    n = 3 if quick else 5
    server = _Server(quick, 1_000)
    rows: list[Row] = []
    try:
        found = server.get("/dicom-web/studies", params={"limit": n, "ModalitiesInStudy": "CT"}, headers=JSON).json()
        studies = [_value(item, "0020000D") for item in found]
        seconds = []
        with Browser(chromium) as browser:
            browser.on_new_document(
                "try { localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])); } catch (e) {}"
            )
            browser.navigate(f"{server.base}/ohif/")  # the viewer's code in the browser cache, as for a user who has it open
            browser.wait_for("document.body && document.body.innerText.includes('CT')", timeout=60)
            for study in studies:
                browser.navigate("about:blank")
                started = time.perf_counter()
                browser.navigate(f"{server.base}/ohif/viewer?StudyInstanceUIDs={study}")
                if not browser.wait_for(DRAWN, timeout=120, interval=0.1):
                    raise RuntimeError(f"OHIF showed no image of {study}: {browser.console[-5:]}")
                seconds.append(time.perf_counter() - started)
        rows.append((f"OHIF: never-viewed study to a non-blank viewport, p50 of {n}", f"{_p50(seconds):.1f}", "s"))
        rows.append((f"OHIF: never-viewed study to a non-blank viewport, slowest of {n}", f"{max(seconds):.1f}", "s"))
    finally:
        server.close()
    return rows
