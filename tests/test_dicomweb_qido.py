"""QIDO-RS answers are capped by qido_limit, with a Warning, and page on with offset (in-process, no socket)."""

from synthpacs.app import SynthPACS


def test_results_are_capped_with_a_warning_and_page_on(config):
    client = SynthPACS(config.replace(qido_limit=7)).http_app().test_client()
    first = client.get("/dicom-web/studies")
    assert first.status_code == 200 and len(first.json) == 7
    assert first.headers["Warning"].startswith("299 ")
    small = client.get("/dicom-web/studies?limit=5")
    assert len(small.json) == 5 and "Warning" not in small.headers
    everything, offset = [], 0
    while True:
        page = client.get(f"/dicom-web/studies?offset={offset}").json
        if not page:
            break
        everything += [item["0020000D"]["Value"][0] for item in page]
        offset += len(page)
    assert len(everything) == len(set(everything)) > 7
