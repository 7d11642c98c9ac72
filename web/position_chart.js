/* The positions tab's chart panel: daily K-line with the rule levels and today's 分时 line (drawn by
   web/chart.js).
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp, state = A.state;
  var $ = Q.$, digitsOf = Q.digitsOf, show = Q.show, showError = Q.showError, errorText = Q.errorText, get = Q.get;

  // ---- charts: daily K-line and today's 分时 line (web/chart.js) ----------------------------------
  var kChart = null, mChart = null;
  var LEVELS = [["cost", "成本", "#1d2433"], ["stop_loss_price", "止损", "#138a4f"],
    ["take_profit_price", "首次止盈", "#d9342b"], ["dynamic_stop_price", "动态止盈", "#f0a020"],
    ["next_add_price", "补仓", "#2463d1"]];

  function openChart(code) {
    $("chart-code").value = code;
    loadChart(code);
    $("chart-panel").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  function loadChart(codeText) {
    var code = String(codeText || "").trim();
    if (!code) { show("chart-msg", "请输入股票代码", "error"); return; }
    show("chart-msg", "加载中…");
    Promise.all([
      get("/api/data/history/" + encodeURIComponent(code)),
      get("/api/trade-records?stock_code=" + encodeURIComponent(code))
    ]).then(function (results) {
      state.chartCode = results[0].stock_code;
      show("chart-msg", results[0].bars.length ? "" : "没有 " + state.chartCode + " 的日线数据", "warn");
      $("chart-area").hidden = false;
      if (!kChart) kChart = QmtChart.kline($("chart"), $("chart-readout"));
      kChart.setData({ code: state.chartCode, bars: results[0].bars, trades: results[1],
        digits: digitsOf(state.chartCode) });
      applyLevels();
      loadIntraday();
    }, function (err) {
      state.chartCode = "";
      $("chart-area").hidden = true;
      showError("chart-msg", err);
    });
  }

  function positionOf(code) {
    return state.snapshot && state.snapshot.positions.filter(function (x) { return x.stock_code === code; })[0];
  }

  /* The rule levels and today's bar follow every live positions snapshot. */
  function applyLevels() {
    if (!kChart || kChart.code() !== state.chartCode) return;
    var p = positionOf(state.chartCode), t = (p && p.trigger_prices) || {};
    kChart.setLevels(p ? LEVELS.map(function (l) {
      return { key: l[0], label: l[1], color: l[2], price: l[0] === "cost" ? p.cost_price : t[l[0]] };
    }) : []);
    if (p && p.current_price > 0 && state.today) kChart.updateToday(p.current_price, state.today);
    $("chart-title").textContent = state.chartCode + (p && p.stock_name ? " " + p.stock_name : "") + (p ? "" : "（未持仓）");
  }

  function loadIntraday() {
    var code = state.chartCode;
    if (!code) return;
    get("/api/data/intraday/" + encodeURIComponent(code)).then(function (series) {
      if (code !== state.chartCode) return;
      if (!mChart) mChart = QmtChart.intraday($("intraday"), $("intraday-head"));
      mChart.setData(series, digitsOf(code));
      var last = series.points[series.points.length - 1];
      if (last && kChart) kChart.updateToday(last.price, series.date);
    }, function (err) { $("intraday-head").textContent = errorText(err); });
  }

  function setChartMode(mode) {
    state.chartMode = mode;
    $("chart-box").hidden = mode !== "k";
    $("intraday-box").hidden = mode !== "m";
    $("chart-mode-k").classList.toggle("active", mode === "k");
    $("chart-mode-m").classList.toggle("active", mode === "m");
    if (mode === "m") loadIntraday();
  }

  A.openChart = openChart; A.loadChart = loadChart; A.applyLevels = applyLevels; A.loadIntraday = loadIntraday;
  A.setChartMode = setChartMode;
})();
