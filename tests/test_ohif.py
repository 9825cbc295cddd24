"""End to end: the OHIF Viewer from /ohif/ in headless Chromium (software WebGL)
lists the synthetic studies, opens a CT, draws it, and loads its SEG.

Needs Debian's ``chromium`` (scripts/install-system-tools.sh) and OHIF
(scripts/install-ohif.sh); under CI a missing one is a failure, not a skip.
``OHIF_SCREENSHOT=path.png`` keeps the final screenshot (docs/ohif.png was made so).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from conftest import IN_CI, require_tool
from e2e.dicomweb import find_synthetic_study, start_server
from e2e.viewport import CANVAS_STATS, DRAWN

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SEGMENTATIONS = """(() => {
  const found = window.services && window.services.segmentationService.getSegmentations();
  return found && found.length ? found.map(s => ({label: s.label, segments: Object.keys(s.segments || {}).length})) : null;
})()"""
CENTER_OF_TEXT = """(text => {
  const el = [...document.querySelectorAll('div, span, button')]
    .filter(e => e.children.length === 0 && e.textContent.trim().startsWith(text))[0];
  if (!el) return null;
  el.scrollIntoView();
  const r = el.getBoundingClientRect();
  return {x: r.x + r.width / 2, y: r.y + r.height / 2};
})"""


def _ohif_installed(server) -> None:
    from synthpacs.dicomweb.ohif import dist_dir

    with server.pacs.http_app().test_request_context():
        if dist_dir() is None:
            message = f"OHIF is not installed in {server.pacs.config.ohif_dir} (make test runs scripts/install-ohif.sh)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)


def _click(browser, text: str, count: int = 1, timeout: float = 30) -> None:
    point = browser.wait_for(f"{CENTER_OF_TEXT}({text!r})", timeout=timeout)
    assert point, f"nothing on the page reads {text!r}"
    for clicks in range(1, count + 1):
        for kind in ("mousePressed", "mouseReleased"):
            browser.call("Input.dispatchMouseEvent", type=kind, x=point["x"], y=point["y"], button="left", clickCount=clicks)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("ohif") / "data")
    yield running
    running.stop()


def test_ohif_opens_a_synthetic_ct_and_its_seg(server, tmp_path):
    from e2e.cdp import Browser

    chromium = require_tool("chromium")
    _ohif_installed(server)
    base = server.base_url
    study = find_synthetic_study(base)
    with Browser(chromium) as browser:
        browser.on_new_document("try { localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])); } catch (e) {}")

        browser.navigate(f"{base}/ohif/")
        listed = browser.wait_for("document.body && document.body.innerText.includes('CT CHEST WITH CONTRAST')", timeout=60)
        assert listed, "the study list did not show the synthetic studies: " + " | ".join(browser.console[-10:])

        started = time.monotonic()
        browser.navigate(f"{base}/ohif/viewer?StudyInstanceUIDs={study.study}")
        stats = browser.wait_for(DRAWN, timeout=90)
        assert stats, f"the viewport stayed blank: {browser.evaluate(CANVAS_STATS)}; console: {browser.console[-10:]}"
        first_image = time.monotonic() - started

        _click(browser, "Target lesions", count=2)  # double-click the SEG in the study browser
        segmentations = browser.wait_for(SEGMENTATIONS, timeout=60)
        assert segmentations and segmentations[0]["segments"] >= 1, browser.console[-10:]
        prompt = browser.wait_for(f"{CENTER_OF_TEXT}('Yes')", timeout=10)
        if prompt:
            _click(browser, "Yes")
        time.sleep(2)
        browser.screenshot(tmp_path / "ohif.png")
        if os.environ.get("OHIF_SCREENSHOT"):
            shutil.copyfile(tmp_path / "ohif.png", os.environ["OHIF_SCREENSHOT"])

        responses = browser.responses()
        frames = [r for r in responses if "/frames/" in r["url"]]
        assert frames, "OHIF fetched no frames"
        assert all(r["status"] == 200 for r in frames), [
            (r["url"], r["status"], r.get("error")) for r in frames if r["status"] != 200
        ]
        assert any("transfer-syntax=" in r["request_headers"].get("Accept", "") for r in frames)
        dicomweb = [r for r in responses if "/dicom-web/" in r["url"]]
        failed = [(r["url"], r["status"], r.get("error")) for r in dicomweb if not r["status"] or r["status"] >= 400]
        assert not failed, failed
        seg = [r for r in dicomweb if study.seg_instance in r["url"]]
        assert seg and all(r["status"] == 200 for r in seg), "the SEG instance was not fetched"
        print(f"first image after {first_image:.1f} s; {len(frames)} frames; screenshot {tmp_path / 'ohif.png'}")
