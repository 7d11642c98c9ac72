/* The 「收益」 page: summary cards, the daily equity curve, daily P&L bars and drawdown (lightweight-charts),
   and realised results per stock, per rule and per closed episode, all from GET /api/performance. */
(function () {
  "use strict";

  var Q = window.Qmt, LW = window.LightweightCharts;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear;
  var UP = "#d9342b", DOWN = "#138a4f";
  var charts = null;

  /* Axis labels: money with thousands separators; a drawdown as a percentage that never reads 「−0.0%」. */
  function axisMoney(v) { return Number(v).toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 }); }
  function axisPct(v) { return (Math.abs(v) < 0.005 ? 0 : v).toFixed(2) + "%"; }

  function pct(v) { return v == null ? "—" : (v * 100).toFixed(2) + "%"; }
  function signed(v) { return v == null ? "--" : (v > 0 ? "+" : "") + Q.fmtMoney(v); }

  /* [field, label, format, colour by sign]: the ids are perf-<field>. */
  var CARDS = [
    ["final_equity", "当前总资产", Q.fmtMoney], ["total_return", "累计收益率", pct, true],
    ["annualized_return", "年化收益率", pct, true], ["max_drawdown", "最大回撤", pct],
    ["sharpe", "夏普比率", function (v) { return v == null ? "—" : Number(v).toFixed(2); }],
    ["realized_pnl", "已实现盈亏（全部卖出）", signed, true],
    ["episode_realized_pnl", "周期统计：盈亏", signed, true], ["win_rate", "周期统计：胜率", pct],
    ["closed_episodes", "周期统计：已结束周期", function (v, s) { return v + "（盈利 " + s.winning_episodes + "）"; }],
    ["fees_paid", "手续费合计", Q.fmtMoney],
    ["trade_count", "成交笔数", function (v, s) { return v + "（买 " + s.buy_count + " / 卖 " + s.sell_count + "）"; }]
  ];

  function renderCards(s) {
    var box = $("perf-cards");
    clear(box);
    CARDS.forEach(function (c) {
      var card = make("div", "card");
      card.appendChild(make("div", "label", c[1]));
      var value = make("div", "value" + (c[3] ? " " + Q.signClass(s[c[0]]) : ""), c[2](s[c[0]], s));
      value.id = "perf-" + c[0];
      card.appendChild(value);
      box.appendChild(card);
    });
  }

  function smallChart(box, formatter) {
    return LW.createChart(box, {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#3b4458", fontSize: 11, attributionLogo: false },
      localization: { locale: "zh-CN", dateFormat: "yyyy-MM-dd", priceFormatter: formatter },
      grid: { vertLines: { color: "#f0f2f6" }, horzLines: { color: "#f0f2f6" } },
      rightPriceScale: { borderColor: "#dfe3ea" }, timeScale: { borderColor: "#dfe3ea" }
    });
  }

  function ensureCharts() {
    if (charts) return charts;
    var equity = smallChart($("perf-equity"), axisMoney), pnl = smallChart($("perf-pnl"), axisMoney),
      dd = smallChart($("perf-drawdown"), axisPct);
    charts = {
      equity: equity.addSeries(LW.AreaSeries, { lineColor: "#2463d1", topColor: "rgba(36,99,209,0.25)",
        bottomColor: "rgba(36,99,209,0.02)", lineWidth: 2 }),
      pnl: pnl.addSeries(LW.HistogramSeries, { priceLineVisible: false }),
      drawdown: dd.addSeries(LW.AreaSeries, { lineColor: DOWN, topColor: "rgba(19,138,79,0.02)",
        bottomColor: "rgba(19,138,79,0.3)", lineWidth: 1, invertFilledArea: true,
        priceFormat: { type: "custom", formatter: axisPct, minMove: 0.01 } }),  // values are percent already
      all: [equity, pnl, dd]
    };
    return charts;
  }

  function renderCharts(equity) {
    var c = ensureCharts();
    c.equity.setData(equity.map(function (p) { return { time: p.date, value: p.total_asset }; }));
    c.pnl.setData(equity.map(function (p) { return { time: p.date, value: p.pnl, color: p.pnl >= 0 ? UP : DOWN }; }));
    c.drawdown.setData(equity.map(function (p) { return { time: p.date, value: p.drawdown ? -p.drawdown * 100 : 0 }; }));
    c.all.forEach(function (chart) { chart.timeScale().fitContent(); });
  }

  function emptyRow(body, text, columns) {
    var tr = make("tr");
    cell(tr, text, "muted").colSpan = columns;
    body.appendChild(tr);
  }

  function renderTables(r) {
    var body = $("perf-stocks-body");
    clear(body);
    r.per_stock.forEach(function (s) {
      var tr = make("tr");
      cell(tr, s.stock_code);
      cell(tr, String(s.episodes), "num");
      cell(tr, String(s.wins), "num");
      cell(tr, signed(s.realized_pnl), "num " + Q.signClass(s.realized_pnl));
      body.appendChild(tr);
    });
    if (!r.per_stock.length) emptyRow(body, "还没有已结束的持仓周期", 4);
    body = $("perf-rules-body");
    clear(body);
    r.rules.forEach(function (row) {
      var tr = make("tr");
      tr.setAttribute("data-rule", row.rule);
      cell(tr, row.label);
      cell(tr, String(row.fills), "num");
      cell(tr, Q.fmtMoney(row.amount), "num");
      cell(tr, Q.fmtMoney(row.fees), "num");
      cell(tr, String(row.episodes), "num");
      cell(tr, signed(row.avg_episode_pnl), "num " + Q.signClass(row.avg_episode_pnl));
      cell(tr, pct(row.win_rate), "num");
      body.appendChild(tr);
    });
    if (!r.rules.length) emptyRow(body, "还没有成交", 7);
    body = $("perf-episodes-body");
    clear(body);
    r.episodes.forEach(function (e) {
      var tr = make("tr");
      cell(tr, e.stock_code);
      cell(tr, e.open_date);
      cell(tr, e.close_date || "--");
      cell(tr, Q.fmtMoney(e.invested), "num");
      cell(tr, Q.fmtMoney(e.proceeds), "num");
      cell(tr, signed(e.profit), "num " + Q.signClass(e.profit));
      cell(tr, e.rules.join("、"));
      body.appendChild(tr);
    });
    if (!r.episodes.length) emptyRow(body, "还没有已结束的持仓周期", 7);
  }

  function load() {
    Q.get("/api/performance").then(function (r) {
      Q.show("perf-msg", r.equity.length ? "" : "还没有账户历史：每个交易日收盘后记录一次总资产。");
      var first = r.equity[0], last = r.equity[r.equity.length - 1];
      $("perf-range").textContent = first ? first.date + " ~ " + last.date + "（" + r.equity.length + " 个交易日）" : "";
      renderCards(r.summary);
      renderCharts(r.equity);
      renderTables(r);
    }, function (err) { Q.showError("perf-msg", err); });
  }

  Q.registerPage("performance", { load: load });
  window.QmtPerformance = { axisMoney: axisMoney, axisPct: axisPct };  // the axis label formats, for tests
})();
