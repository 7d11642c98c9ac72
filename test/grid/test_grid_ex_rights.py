"""grid/store.py on an ex-date (issue 28 §2): a session's centre, reference (last grid fill), callback watch and
last price × the factor, its net shares and their cost through the event, once per event, persisted."""
from __future__ import annotations

from datetime import date, datetime

from grid.rules import GridBook, GridParams, GridState, GridWatch
from grid.store import GridStore, SessionRow
from market.ex_rights import CorporateAction
from persistence.storage import Database

EVENT = CorporateAction("000661.SZ", date(2020, 6, 9), cash_per_share=1.0, shares_per_share=1.0)
FACTOR = 0.499249767


def session(store: GridStore) -> SessionRow:
    params = GridParams(0.02, 5000, 0.0, 20000, 0.08, -0.10, 30, 0.15)
    state = GridState(650.0, GridWatch(low=637.0, high=None), GridBook(net_volume=100, open_cost=65_012.5),
                      datetime(2020, 6, 8, 10, 0))
    return store.create(SessionRow("000661.SZ", params, 660.0, state, datetime(2020, 6, 1, 9, 30),
                                   date(2020, 6, 1), last_price=666.46))


def test_session_prices_follow_the_factor_once_and_persist(tmp_path):
    store = GridStore(Database(tmp_path / "trading.db"))
    row = session(store)
    detail = store.apply_ex_rights(row, EVENT, FACTOR)
    assert detail == {"session_id": row.id, "factor": FACTOR, "center_price": [660.0, 329.504846],
                      "reference_price": [650.0, 324.512349], "watch_low": [637.0, 318.022102],
                      "watch_high": [None, None], "net_volume": [100, 200]}
    assert store.apply_ex_rights(row, EVENT, FACTOR) is None  # once per event
    [loaded] = store.load()
    assert (loaded.center_price, loaded.state.reference_price, loaded.state.watch.low, loaded.last_price) == (
        329.504846, 324.512349, 318.022102, 332.73)
    assert (loaded.state.book.net_volume, loaded.state.book.open_cost) == (200, 64_912.5)  # 100 × 1.00 paid out
