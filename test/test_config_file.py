"""config.py as a person edits it: one plain `NAME = value` line per parameter, the metadata table takes its
defaults from those lines, and a daemon started from an edited copy runs with the edited values."""
import ast
import shutil
from pathlib import Path

import config
from daemon_support import PROJECT, start_ready


def _module_assignments(source: str) -> dict[str, ast.expr]:
    tree = ast.parse(source)
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    return found


def _table_default_expressions(source: str) -> dict[str, ast.expr]:
    """`_p("KEY", <default>, ...)` rows of the PARAMS table: KEY -> the default expression."""
    rows = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_p":
            rows[node.args[0].value] = node.args[1]
    return rows


def test_every_parameter_has_a_plain_assignment_that_the_table_uses():
    source = (PROJECT / "config.py").read_text(encoding="utf-8")
    assignments = _module_assignments(source)
    rows = _table_default_expressions(source)
    assert list(rows) == [p.key for p in config.PARAMS]
    missing = [key for key in rows if key not in assignments]
    assert missing == [], f"参数缺少 `NAME = value` 行：{missing}"
    not_linked = [key for key, expr in rows.items() if not (isinstance(expr, ast.Name) and expr.id == key)]
    assert not_linked == [], f"表中默认值应写成同名变量：{not_linked}"
    for p in config.PARAMS:
        assert getattr(config, p.key) == p.default == config.DEFAULTS[p.key]
        assert ast.literal_eval(assignments[p.key]) == p.default


def test_each_assignment_line_carries_its_chinese_meaning_as_a_comment():
    lines = (PROJECT / "config.py").read_text(encoding="utf-8").splitlines()
    for p in config.PARAMS:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{p.key} = "))
        comment = lines[index].partition("  # ")[2] or lines[index - 1].lstrip("# ")
        assert p.meaning in comment, p.key


def test_switches_read_as_plain_module_attributes():
    assert config.ENABLE_SIMULATION_MODE is True
    assert config.ENABLE_AUTO_TRADING is False
    assert config.DYNAMIC_TAKE_PROFIT[0] == (0.05, 0.96)


def test_ranges_are_written_in_full_with_thousands_separators():
    assert config.PARAMS_BY_KEY["SYNTHETIC_SEED"].describe_range() == "0 ~ 2,147,483,647"
    assert config.PARAMS_BY_KEY["GRID_BUY_AMOUNT"].describe_range() == "500 ~ 1,000,000"
    assert config.PARAMS_BY_KEY["TRANSFER_FEE_RATE"].describe_range() == "0 ~ 0.001"
    assert config.PARAMS_BY_KEY["STOP_LOSS_RATIO"].describe_range() == "-0.5 ~ -0.001"


def _copy_project(target: Path) -> Path:
    target.mkdir()
    for path in PROJECT.glob("*.py"):
        shutil.copy2(path, target / path.name)
    for init in PROJECT.glob("*/__init__.py"):  # the packages (issue 31)
        shutil.copytree(init.parent, target / init.parent.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT / "web", target / "web")
    return target


def test_daemon_started_from_an_edited_config_py_uses_the_edited_values(tmp_path):
    app = _copy_project(tmp_path / "app")
    source = (app / "config.py").read_text(encoding="utf-8")
    edited = source.replace("ENABLE_AUTO_TRADING = False  #", "ENABLE_AUTO_TRADING = True  #", 1)
    edited = edited.replace("POSITION_UNIT = 20_000.0  #", "POSITION_UNIT = 30_000.0  #", 1)
    assert edited.count("= True  #") == source.count("= True  #") + 1 and "30_000.0" in edited
    (app / "config.py").write_text(edited, encoding="utf-8")
    pool = tmp_path / "pool.json"
    pool.write_text("[]", encoding="utf-8")
    daemon = start_ready(tmp_path / "run", ["--stock-pool", str(pool)], {"DATA_SOURCE": "replay"}, project=app)
    try:
        status = daemon.api("/api/status")
        assert status["switches"]["ENABLE_AUTO_TRADING"] is True
        params = {p["key"]: p for p in daemon.api("/api/config")["params"]}
        assert params["POSITION_UNIT"]["value"] == 30000.0 and params["POSITION_UNIT"]["default"] == 30000.0
        assert params["POSITION_UNIT"]["overridden"] is False
    finally:
        daemon.terminate()
