"""RetrieveURLs and BulkDataURIs carry an address the client can reach (research/viewers.md pitfall 5)."""

import pytest

from synthpacs.app import SynthPACS


def _retrieve_url(config, headers=None, port="8080", **overrides):
    pacs = SynthPACS(config.replace(**overrides) if overrides else config)
    client = pacs.http_app().test_client()
    response = client.get("/dicom-web/studies?limit=1", headers=headers or {}, environ_overrides={"SERVER_PORT": port})
    return response.json[0]["00081190"]["Value"][0]


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Host": "127.0.0.1:8080"}, "http://127.0.0.1:8080/dicom-web/studies/"),
        ({"Host": "127.0.0.1"}, "http://127.0.0.1:8080/dicom-web/studies/"),  # dicomweb-client leaves the port out
        ({"Host": "pacs.local", "X-Forwarded-Proto": "https"}, "https://pacs.local/dicom-web/studies/"),
        (
            {"Host": "10.0.0.5:8080", "X-Forwarded-Host": "pacs.example.org", "X-Forwarded-Proto": "https"},
            "https://pacs.example.org/dicom-web/studies/",
        ),
    ],
)
def test_urls_follow_the_request(config, headers, expected):
    assert _retrieve_url(config, headers).startswith(expected)


def test_public_base_url_wins(config):
    url = _retrieve_url(config, {"Host": "127.0.0.1:8080"}, public_base_url="https://example.org/pacs/")
    assert url.startswith("https://example.org/pacs/dicom-web/studies/")
