"""The OpenAPI contract: the document validates (openapi-spec-validator), every route of the Flask app is in it
with a description (enumerated from `app.url_map`, so routes added later are caught), request shapes come
from the parsers' own declarations, and /api/docs renders the vendored Swagger UI in Chromium under the CSP."""
from pathlib import Path

import pytest
from flask import Blueprint
from openapi_spec_validator import validate

import webapi.openapi as web_openapi
import webapi.requests as req
from web_server import create_app
from web_test_support import Client, build_system, start_server

PROJECT = Path(__file__).resolve().parents[2]


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
    assert orders[0]["allowEmptyValue"] is True  # an empty ?status= is the filter left out, as the route reads it
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


def test_security_per_operation_is_the_servers_token_rule(system, server):
    """On loopback, reads are open and the document says so per operation; changes need the token (the default).
    Bound to every interface, every API read needs it too; the page and its static files never do."""
    spec = web_openapi.build(server.app)
    assert spec["security"] == [{"apiToken": []}]
    assert spec["paths"]["/api/positions"]["get"]["security"] == []
    assert spec["paths"]["/api/health"]["get"]["security"] == []
    assert "security" not in spec["paths"]["/api/actions/execute_buy"]["post"]  # the token, as documented globally
    client = Client(server.port)
    try:
        assert client.get("/api/positions", token=None).status == 200
        assert client.post("/api/actions/pause", {}, token=None).status == 401
    finally:
        client.close()
    exposed = web_openapi.build(create_app(system.ctx, "0.0.0.0", 5000))
    assert "security" not in exposed["paths"]["/api/positions"]["get"]
    assert exposed["paths"]["/"]["get"]["security"] == []
    assert exposed["paths"]["/static/{filename}"]["get"]["security"] == []


def test_stock_code_pattern_is_exactly_what_the_parser_accepts():
    """Every 3-digit prefix in every written form: the documented pattern and parse_code agree on each."""
    import re

    forms = lambda d: (d, f"{d}.SH", f"{d}.SZ", f"{d}.sh", f"sh{d}", f"SZ{d}", f"Sz{d}", f"sh{d}.SH", f" {d}",
                       f"{d}.XX", f"{d}\n")
    disagree = []
    for prefix in range(1000):
        for text in forms(f"{prefix:03d}001"):
            try:
                req.parse_code(text)
                accepted = True
            except req.ApiError as refused:
                assert refused.status == 400 and refused.code == "INVALID_STOCK_CODE"
                accepted = False
            if accepted != bool(re.fullmatch(req.STOCK_CODE_PATTERN, text)):
                disagree.append(text)
    assert disagree == []
    assert req.parse_code("sh600036") == "600036.SH"
    with pytest.raises(req.ApiError, match="与交易所不符"):
        req.parse_code("600036.SZ")  # another instrument's exchange: refused, and the schema says so
    assert not re.fullmatch(req.STOCK_CODE_PATTERN, "600036.SZ")


def test_bodies_document_what_their_parsers_refuse_and_accept():
    reason = req.REASON.schema()["properties"]["reason"]
    assert reason["minLength"] == 1 and reason["maxLength"] == 200 and "null" in reason["type"]
    for blank in ("", "   ", "\t\n"):
        assert not __import__("re").fullmatch(reason["pattern"], blank)
        with pytest.raises(req.ApiError) as refused:
            req.parse_reason({"reason": blank}, "默认")
        assert refused.value.code == "INVALID_REASON"
    assert req.parse_reason({"reason": None}, "默认") == "默认"  # null is the field left out, as documented
    changes = req.CONFIG_CHANGES.schema()["properties"]["changes"]
    assert changes["minProperties"] == 1 and "STOP_LOSS_RATIO" in changes["propertyNames"]["enum"]
    with pytest.raises(req.ApiError):
        req.parse_config_changes({"changes": {}})
    # an optional field may be null (left out): the schema says so and every parser agrees
    sell_by_ratio = req.SELL.schema()["oneOf"][1]
    assert sell_by_ratio["properties"]["confirm"]["type"] == ["boolean", "null"]
    assert req.parse_sell({"stock_code": "600000", "ratio": 0.5, "confirm": None}).confirmed is False
    assert req.parse_grid_start({"stock_code": "600000", "center_price": None}).options == {}
    assert req.parse_rollback({"history_id": None}) is None
    # a multipart part is never null: the upload form keeps plain types
    upload = req.ORDER_FILE_UPLOAD.schema()["properties"]
    assert upload["dry_run"]["type"] == "string"


def test_config_update_documents_each_parameter_and_its_range(server):
    import config

    spec = web_openapi.build(server.app)
    body = spec["paths"]["/api/config/update"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    changes = body["properties"]["changes"]
    assert changes["minProperties"] == 1 and changes["additionalProperties"] is False
    assert set(changes["properties"]) == set(config.PARAMS_BY_KEY)
    stop = config.PARAMS_BY_KEY["STOP_LOSS_RATIO"]
    assert {k: changes["properties"]["STOP_LOSS_RATIO"][k] for k in ("type", "minimum", "maximum")} == {
        "type": "number", "minimum": stop.min, "maximum": stop.max}


def test_routes_read_an_empty_query_value_as_left_out_and_a_text_part_as_the_file(server):
    client = Client(server.port)
    try:
        assert client.get("/api/trade-records?format=&start=&stock_code=").status == 200
        assert client.get("/api/signals/history?limit=&status=&rule=&stock_code=").status == 200
        # the log filter refuses what its declaration forbids (it used to cut a long text, take a Unicode digit)
        assert client.get("/api/logs?q=" + "x" * 201).status == 400
        assert client.get("/api/logs?after=%C2%B2").status == 400
        assert client.get("/api/logs?after=" + "9" * 5000).status == 400
    finally:
        client.close()
    name, raw, dry_run = req.parse_order_file_upload({}, {"file": "代码,方向\n", "dry_run": "true"})
    assert (name, raw, dry_run) == ("upload.csv", "代码,方向\n".encode(), True)
    with pytest.raises(req.ApiError) as refused:
        req.parse_order_file_upload({}, {"dry_run": "true"})
    assert refused.value.code == "MISSING_FIELD"
