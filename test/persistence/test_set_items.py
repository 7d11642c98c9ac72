"""`--set KEY=VALUE` items of main.py and qmt_gateway.py: the value as JSON when it parses, else the text."""
import pytest

from persistence.config_store import parse_set_items


def test_values_are_json_when_they_parse_else_text():
    items = ["STOP_LOSS_RATIO=-0.07", " GATEWAY_PORT =8765", 'DATA_SOURCE="replay"', "HOST=127.0.0.1", "X=a=b",
             "FLAG=true", "EMPTY="]
    assert parse_set_items(items) == {"STOP_LOSS_RATIO": -0.07, "GATEWAY_PORT": 8765, "DATA_SOURCE": "replay",
                                      "HOST": "127.0.0.1", "X": "a=b", "FLAG": True, "EMPTY": ""}


def test_an_item_without_equals_sign_is_refused_in_chinese():
    with pytest.raises(ValueError, match="--set 参数格式应为 KEY=VALUE：STOP_LOSS_RATIO"):
        parse_set_items(["STOP_LOSS_RATIO"])
