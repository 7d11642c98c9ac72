"""Imports xtquant submodules without running `xtquant/__init__.py`, whose import-time update check calls the
package index over the internet (xtquant 250807: `requests.get("https://pypi.org/pypi/xtquant/json")`)."""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import re
import sys
from pathlib import Path
from types import ModuleType

from core.models import DataUnavailable

log = logging.getLogger(__name__)

NATIVE_DATA_MODULE = "xtquant.datacenter"
NATIVE_REASON = "xtquant 的原生模块只能在安装了 miniQMT 的 Windows 电脑上加载"
NOT_ON_THIS_MACHINE = f"本机无法使用 miniQMT 行情：{NATIVE_REASON}"


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
    except ImportError as exc:  # Python's English reason stays in the exception chain (the debug log)
        log.debug("xtquant.%s 导入失败：%s", submodule, exc)
        raise DataUnavailable("XTQUANT_NATIVE_MISSING", NOT_ON_THIS_MACHINE) from exc


def data_native_available() -> bool:
    """Whether xtdata's native part (xtquant.datacenter) can load here, found without importing anything:
    a stand-in already registered (tests), or an extension file this Python can load in xtquant's folder
    (the wheel's .pyd files only load on Windows)."""
    if NATIVE_DATA_MODULE in sys.modules:
        return True
    try:
        spec = importlib.util.find_spec("xtquant")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    stem = NATIVE_DATA_MODULE.rsplit(".", 1)[1]
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for folder in spec.submodule_search_locations:
        path = Path(folder)
        if path.is_dir() and any(p.name.startswith(stem) and p.name.endswith(suffixes) for p in path.iterdir()):
            return True
    return False


def unavailable_note(fallback_label: str) -> str:
    """The start-up line of a default run on a machine without miniQMT (Linux, macOS)."""
    return f"本机没有可用的 miniQMT（{NATIVE_REASON}），改用{fallback_label}"


def _version(init_file: str | None) -> str:
    if not init_file:
        return ""
    text = Path(init_file).read_text(encoding="utf-8", errors="replace")
    match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return match.group(1) if match else ""
