"""Imports xtquant submodules without running `xtquant/__init__.py`, whose import-time update check calls the
package index over the internet (xtquant 250807: `requests.get("https://pypi.org/pypi/xtquant/json")`)."""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from models import DataUnavailable


def xtquant_package() -> ModuleType:
    """The `xtquant` package object. If nobody imported it yet, it is registered from its spec without
    executing its `__init__` (which holds nothing but the version and the network check)."""
    existing = sys.modules.get("xtquant")
    if existing is not None:
        return existing
    spec = importlib.util.find_spec("xtquant")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailable("XTQUANT_MISSING", "未安装 xtquant，无法使用 miniQMT 行情")
    package = importlib.util.module_from_spec(spec)
    package.__version__ = _version(spec.origin)
    sys.modules["xtquant"] = package
    return package


def import_xtquant(submodule: str) -> ModuleType:
    """`xtquant.<submodule>` (e.g. 'xtdata', 'xttrader'); DataUnavailable with a Chinese reason when its
    native part is missing (the .pyd files only load on Windows)."""
    xtquant_package()
    try:
        return importlib.import_module(f"xtquant.{submodule}")
    except ImportError as exc:
        raise DataUnavailable("XTQUANT_NATIVE_MISSING",
                              f"xtquant.{submodule} 无法加载（其原生模块仅支持 Windows + miniQMT）：{exc}") from exc


def _version(init_file: str | None) -> str:
    if not init_file:
        return ""
    text = Path(init_file).read_text(encoding="utf-8", errors="replace")
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return match.group(1) if match else ""
