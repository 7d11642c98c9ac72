"""The trading calendar past exchange_calendars' table (issue 26 item 3): the owner's holiday file closes the
days it lists and makes every other weekday of its years known (not estimated); a bad file is refused; the
start-up warning comes CALENDAR_WARN_DAYS before the known days run out, in the log and in /api/status."""
from __future__ import annotations

from datetime import date

import pytest

from daemon_support import start_ready
from market_rules import TradingCalendar, configure_calendar, read_holidays_file
from market.clock import RealClock

# Test data only: which days the exchanges close in 2027 is not published to this project yet; these rows
# stand for whatever the owner copies from the exchange's notice.
HOLIDAYS_2027 = "\ufeff# 上交所 2027 休市安排（示例，Excel 存的带 BOM）\n\n2027-01-01  # 元旦\n\n2027-02-08\n2027-02-09 # 春节\n"


def holiday_file(tmp_path, text=HOLIDAYS_2027):
    path = tmp_path / "holidays.txt"
    path.write_text(text, encoding="utf-8")
    return path


def table_end() -> date:
    calendar = TradingCalendar()
    return calendar.last_table_day


def test_without_a_holiday_file_new_years_day_after_the_table_is_only_estimated():
    calendar = TradingCalendar()
    assert table_end() == date(2026, 12, 31)  # exchange_calendars 4.13.2/4.13.3: XSHG known through 2026
    assert calendar.is_trading_day(date(2027, 1, 1)) is True  # a Friday, guessed as a weekday
    assert "按工作日估算" in calendar.fallback_warning


def test_the_holiday_file_closes_its_days_and_makes_the_rest_of_its_year_known(tmp_path):
    calendar = TradingCalendar()
    calendar.add_holidays(read_holidays_file(holiday_file(tmp_path)))
    assert calendar.is_trading_day(date(2027, 1, 1)) is False
    assert calendar.is_trading_day(date(2027, 2, 9)) is False
    assert calendar.next_trading_day(date(2026, 12, 31)) == date(2027, 1, 4)
    assert calendar.next_trading_day(date(2027, 2, 5)) == date(2027, 2, 10)
    assert calendar.is_trading_day(date(2027, 12, 31)) is True
    assert calendar.known_through == date(2027, 12, 31)
    assert calendar.fallback_warning == ""  # nothing was estimated
    assert calendar.is_trading_day(date(2028, 1, 3)) is True  # past the file's last year: estimated again
    assert "2027-12-31" in calendar.fallback_warning


def test_a_listed_day_inside_the_table_is_closed_too(tmp_path):
    calendar = TradingCalendar()
    assert calendar.is_trading_day(date(2026, 12, 30)) is True
    calendar.add_holidays(read_holidays_file(holiday_file(tmp_path, "2026-12-30\n")))
    assert calendar.is_trading_day(date(2026, 12, 30)) is False
    assert calendar.known_through == date(2026, 12, 31)


@pytest.mark.parametrize("text, named", [
    ("2027-01-01\n2027/02/08\n", "第 2 行「2027/02/08」不是 YYYY-MM-DD 格式的日期"),
    ("# ok\n2027-02-30\n", "第 2 行「2027-02-30」不是有效日期"),
    ("20270101\n", "第 1 行「20270101」不是 YYYY-MM-DD 格式的日期"),
])
def test_a_bad_line_is_refused_naming_its_line(tmp_path, text, named):
    path = holiday_file(tmp_path, text)
    with pytest.raises(ValueError) as refused:
        read_holidays_file(path)
    assert str(refused.value) == f"节假日文件 {path} {named}"


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="不存在"):
        configure_calendar(TradingCalendar(), str(tmp_path / "none.txt"), date(2026, 12, 7), 30)


@pytest.mark.parametrize("today, warn_days, expected", [
    (date(2026, 12, 7), 30, "交易日历只覆盖到 2026-12-31（还剩 24 天）"),
    (date(2026, 12, 1), 30, "交易日历只覆盖到 2026-12-31（还剩 30 天）"),
    (date(2026, 11, 30), 30, ""),
    (date(2027, 1, 5), 30, "交易日历只覆盖到 2026-12-31（还剩 0 天）"),
    (date(2026, 12, 7), 20, ""),
])
def test_the_expiry_warning_comes_warn_days_before_the_known_days_end(today, warn_days, expected):
    calendar = TradingCalendar()
    warning = configure_calendar(calendar, "", today, warn_days)
    assert warning.startswith(expected) if expected else warning == ""
    assert calendar.fallback_warning == warning
    if expected:
        assert "HOLIDAYS_FILE" in warning


def test_a_holiday_file_for_next_year_ends_the_warning(tmp_path):
    calendar = TradingCalendar()
    assert configure_calendar(calendar, str(holiday_file(tmp_path)), date(2026, 12, 7), 30) == ""


def test_the_daemon_warns_at_start_and_shows_it_in_the_status_until_the_file_covers_next_year(tmp_path):
    """A real start on today's date: the warning is there exactly when the known days end within 30 days."""
    today = RealClock().today()
    left = (TradingCalendar().known_through - today).days
    daemon = start_ready(tmp_path / "plain", ["--simulation"], {"DATA_SOURCE": "replay"})
    try:
        warning = daemon.api("/api/status")["clock"]["calendar_warning"]
        log_text = daemon.output()
    finally:
        daemon.terminate()
    if left <= 30:
        assert warning.startswith("交易日历只覆盖到") and warning in log_text
    else:
        assert warning == ""
    covered = holiday_file(tmp_path, f"{today.year + 1}-01-01\n")
    daemon = start_ready(tmp_path / "covered", ["--simulation"],
                         {"DATA_SOURCE": "replay", "HOLIDAYS_FILE": str(covered)})
    try:
        assert daemon.api("/api/status")["clock"]["calendar_warning"] == ""
    finally:
        daemon.terminate()


def test_the_doctors_calendar_check_reads_the_file_without_touching_the_running_calendar(tmp_path):
    import config
    import doctor.checks as doctor
    from datetime import datetime, timedelta, timezone

    class Settings:
        def __init__(self, **changes):
            self.values = {**config.DEFAULTS, **changes}

        def get(self, key):
            return self.values[key]

    running = TradingCalendar()
    now = datetime(2026, 12, 7, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    env = doctor.DoctorEnv(settings=Settings(HOLIDAYS_FILE=str(holiday_file(tmp_path))), data_dir=tmp_path,
                           log_dir=tmp_path, now=lambda: now, calendar=running)
    check = doctor.check_calendar(env)
    assert (check.level, check.detail) == (doctor.OK, "已知交易日到 2027-12-31")
    assert running.known_through == date(2026, 12, 31) and running.expiry_warning == ""
    plain = doctor.check_calendar(doctor.DoctorEnv(settings=Settings(), data_dir=tmp_path, log_dir=tmp_path,
                                                   now=lambda: now, calendar=running))
    assert plain.level == doctor.WARNING and plain.detail.startswith("交易日历只覆盖到 2026-12-31（还剩 24 天）")
