"""The OpenAPI document covers every route the server answers, and only those."""

import re

from synthpacs.app import SynthPACS
from synthpacs.dicomweb.openapi import document


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_every_route_is_documented_with_its_methods_and_parameters(config):
    app = SynthPACS(config).http_app()
    doc = document()
    routes = {}
    for rule in app.url_map.iter_rules():
        routes.setdefault(_openapi_path(rule.rule), set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    assert set(routes) == set(doc["paths"])
    for path, methods in routes.items():
        assert set(doc["paths"][path]) - {"parameters"} == methods, path
        names = set(re.findall(r"{([a-z_]+)}", path))
        for method in methods:
            operation = doc["paths"][path][method]
            declared = {
                p["name"] for p in operation.get("parameters", []) + doc["paths"][path].get("parameters", []) if p["in"] == "path"
            }
            assert declared == names, (path, method)
            assert operation["responses"], (path, method)


def test_document_is_served_as_json(config):
    client = SynthPACS(config).http_app().test_client()
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.json["openapi"] == "3.0.3"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
