"""The OpenAPI contract: the document validates (openapi-spec-validator), every route of the Flask app is in it
with a description (enumerated from `app.url_map`, so routes added later are caught), request shapes come
from the parsers' own declarations, and /api/docs renders the vendored Swagger UI in Chromium under the CSP."""
from pathlib import Path

import pytest
from flask import Blueprint
from openapi_spec_validator import validate

import web_openapi
import web_requests as req
from web_server import create_app
from web_test_support import Client, build_system, start_server

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    built = build_system(tmp_path_factory.mktemp("openapi"))
    yield built
    built.close()


@pytest.fixture(scope="module")
def server(system):
    started = start_server(system)
    yield started
    started.stop()


def test_document_validates_and_lists_every_route(server):
    app = server.app
    spec = web_openapi.build(app)
    validate(spec)  # raises on an invalid OpenAPI 3.1 document
    assert spec["openapi"] == "3.1.0"
    assert web_openapi.undocumented(app) == []
    listed = {(path, method) for path, methods in spec["paths"].items() for method in methods}
    missing = []
    for rule in app.url_map.iter_rules():
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            if (web_openapi.openapi_path(rule.rule), method.lower()) not in listed:
                missing.append(f"{method} {rule.rule}")
    assert missing == []
    # every route has a Chinese summary, none the placeholder
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert operation["summary"] and operation["summary"] != "（未说明的接口）", (method, path)
    assert len(listed) >= 40
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert sorted(set(web_openapi.OPERATIONS) - endpoints) == []  # no description of a route that is gone


def test_a_route_added_without_description_is_reported(system):
    app = create_app(system.ctx, "127.0.0.1", 5000)
    extra = Blueprint("extra", __name__)
    extra.add_url_rule("/api/extra/<int:item>", "thing", lambda item: "", methods=["POST"])
    app.register_blueprint(extra)
    assert web_openapi.undocumented(app) == ["POST /api/extra/{item} (extra.thing)"]
    assert "post" in web_openapi.build(app)["paths"]["/api/extra/{item}"]


def test_request_schemas_are_the_parsers_declarations(server):
    spec = web_openapi.build(server.app)
    buy = spec["paths"]["/api/actions/execute_buy"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert buy == req.BUY.schema()
    titles = [v["title"] for v in buy["oneOf"]]
    assert titles == ["按金额买入", "按数量买入", "从股票池随机买入"]
    by_volume = buy["oneOf"][1]
    assert by_volume["required"] == ["stock_code", "volume"]
    assert by_volume["properties"]["volume"] == {"type": "integer", "description": "买入数量", "minimum": 1,
                                                 "maximum": req.MAX_VOLUME}
    assert by_volume["additionalProperties"] is False
    orders = spec["paths"]["/api/orders"]["get"]["parameters"]
    assert [p["name"] for p in orders] == ["status", "date"]
    assert orders[0]["schema"]["enum"][0] == "active"
    position = spec["paths"]["/api/positions/{code}"]["get"]["parameters"][0]
    assert position["in"] == "path" and position["schema"]["pattern"] == req.STOCK_CODE_PATTERN
    # the declared bounds are what the parser enforces
    with pytest.raises(req.ApiError) as refused:
        req.parse_buy({"from_pool": True, "count": req.MAX_RANDOM_BUY_COUNT + 1})
    assert refused.value.status == 400
    assert req.parse_buy({"from_pool": True, "count": req.MAX_RANDOM_BUY_COUNT}).count == 20


def test_served_document_and_docs_page(server):
    client = Client(server.port)
    try:
        reply = client.get("/api/openapi.json", token=None)
        assert reply.status == 200
        assert reply.json["paths"]["/api/openapi.json"]["get"]["summary"].startswith("本 API 的 OpenAPI")
        page = client.get("/api/docs", token=None)
        assert page.status == 200 and "swagger-ui-bundle.js" in page.text
        assert "https://" not in page.text and "http://" not in page.text  # no CDN
        bundle = client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js", token=None)
        assert bundle.status == 200 and len(bundle.body) > 1_000_000
    finally:
        client.close()
    assert (PROJECT / "web" / "vendor" / "swagger-ui" / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_docs_page_renders_offline_in_chromium(server):
    from browser_support import CHROMIUM, LAUNCH_ARGS, require_browser
    from playwright.sync_api import sync_playwright

    require_browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            problems, outside = [], []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: outside.append(r.url) if "127.0.0.1" not in r.url else None)
            page.goto(f"{server.url}/api/docs")
            page.wait_for_selector("text=miniQMT 无人值守交易守护进程 API", timeout=15_000)
            page.wait_for_selector("text=手动买入", timeout=15_000)
            assert page.locator(".opblock").count() >= 40
            assert outside == []
            assert [m for m in problems if "Content Security Policy" in m] == []
        finally:
            browser.close()
