/* miniQMT web UI: talks only to the JSON API (DESIGN §11). Live positions arrive over server-sent events read
   with fetch (so the API token travels in a header, never in a URL). Every API error is shown where the user
   acted. No framework, no build step.
   This file is the main page's router and wiring: the tabs, the emergency stop, 全部撤单 and the API token, and
   init() which connects every control to its part. The parts (loaded before it by index.html, sharing
   window.QmtApp from app_state.js): status.js, positions.js, live_stream.js, position_chart.js, orders_trades.js,
   signals.js, manual_trade.js, stock_pool.js, grid.js. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp, state = A.state;
  var $ = Q.$, show = Q.show, showError = Q.showError, errorText = Q.errorText, post = Q.post;
  var confirmDialog = Q.confirmDialog;

  // ---- tabs --------------------------------------------------------------------------------------
  var loaders = {
    overview: function () { A.loadStatus(); A.loadHealth(); },
    positions: function () { if (state.chartCode) A.loadChart(state.chartCode); },
    orders: A.loadOrders, trades: A.loadTrades, signals: A.loadSignals, pool: A.loadPool, grid: A.loadGrid,
    trade: function () {}
  };

  /* The one router: the main page's tabs (their parts are loaded before this file) are in `loaders`; other pages
     register with Qmt.registerPage (common.js). */
  function activate() {
    var name = (location.hash || "#overview").slice(1);
    if (!loaders[name] && !Q.pages[name]) name = "overview";
    var previous = Q.pages[state.tab];
    if (previous && previous.leave && state.tab !== name) previous.leave();
    state.tab = name;
    Array.prototype.forEach.call(document.querySelectorAll(".tab"), function (s) { s.hidden = s.id !== "tab-" + name; });
    Array.prototype.forEach.call(document.querySelectorAll("#tabs a"), function (a) {
      var active = a.getAttribute("data-tab") === name;
      a.classList.toggle("active", active);
      if (active && a.scrollIntoView) a.scrollIntoView({ block: "nearest", inline: "nearest" });
    });
    if (loaders[name]) loaders[name]();
    else Q.pages[name].load();
  }

  // ---- emergency stop ----------------------------------------------------------------------------
  function emergencyStop() {
    confirmDialog("紧急停止", "将立即进入「紧急停止」状态：不再产生任何新委托（只允许经确认的手动卖出），并撤销全部未完成委托；重启后仍保持停止，需明确「恢复交易」。确认执行？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/emergency_stop").then(function (r) {
        show("switch-msg", "");
        show("global-msg", "紧急停止已执行：" + r.message + "（点击此提示关闭）", "warn");
        A.loadStatus();
        if (state.tab === "orders") A.loadOrders();
      }, function (err) { showError("global-msg", err); A.loadStatus(); });
    });
  }

  function cancelAll() {
    confirmDialog("全部撤单", "撤销全部未完成委托？（自动交易开关和交易状态不变）").then(function (yes) {
      if (!yes) return;
      post("/api/actions/cancel_all").then(function (r) {
        show("orders-msg", r.message, "ok");
        A.loadOrders();
        A.loadStatus();
      }, function (err) { showError("orders-msg", err); });
    });
  }

  /* A typed token is checked at once with a cheap authenticated call, not at the next action. */
  function saveToken() {
    var typed = $("token-input").value.trim();
    if (!typed) { show("token-msg", "请输入令牌", "error"); return; }
    Q.setToken(typed);
    show("token-msg", "正在检查令牌…");
    post("/api/auth/check").then(function () {
      show("token-msg", "");
      $("token-bar").hidden = true;
      show("global-msg", "令牌正确，已保存在本浏览器标签页（点击此提示关闭）", "ok");
      A.loadStatus();
    }, function (err) {
      $("token-bar").hidden = false;
      show("token-msg", err.status === 401 ? "令牌错误，请核对数据目录中 api_token 文件的内容" : errorText(err), "error");
    });
  }

  // ---- wiring ------------------------------------------------------------------------------------
  function init() {
    if (!Q.hasToken()) $("token-bar").hidden = false;
    $("token-save").addEventListener("click", saveToken);
    $("token-input").addEventListener("keydown", function (ev) { if (ev.key === "Enter") saveToken(); });
    $("emergency-stop").addEventListener("click", emergencyStop);
    QmtOperator.init(A.loadStatus);
    $("signals-filter").addEventListener("submit", function (ev) { ev.preventDefault(); A.loadSignals(); });
    $("global-msg").addEventListener("click", function () { show("global-msg", ""); });
    $("cancel-all").addEventListener("click", cancelAll);
    $("chart-form").addEventListener("submit", function (ev) { ev.preventDefault(); A.loadChart($("chart-code").value); });
    $("chart-mode-k").addEventListener("click", function () { A.setChartMode("k"); });
    $("chart-mode-m").addEventListener("click", function () { A.setChartMode("m"); });
    $("orders-form").addEventListener("submit", function (ev) { ev.preventDefault(); A.loadOrders(); });
    $("trades-form").addEventListener("submit", function (ev) { ev.preventDefault(); A.loadTrades(); });
    $("trades-csv").addEventListener("click", A.exportTrades);
    $("buy-form").addEventListener("submit", A.submitBuy);
    $("buy-form").addEventListener("change", function () { A.toggleBy($("buy-form"), "buy_by"); });
    $("pool-buy-form").addEventListener("submit", A.submitPoolBuy);
    $("sell-form").addEventListener("submit", A.submitSell);
    $("sell-form").addEventListener("change", function () { A.toggleBy($("sell-form"), "sell_by"); });
    A.watchCapacity($("buy-form"), "buy", "buy-capacity");
    A.watchCapacity($("sell-form"), "sell", "sell-capacity");
    $("pool-save").addEventListener("click", A.savePool);
    $("pool-reload").addEventListener("click", A.loadPool);
    $("grid-form").addEventListener("submit", A.startGrid);
    $("grid-form").stock_code.addEventListener("change", A.proposeGrid);
    QmtConfig.init(A.loadStatus);
    window.addEventListener("hashchange", activate);
    A.loadStatus();
    activate();
    A.openStream();
    A.loadProtection();
    setInterval(function () {
      A.loadStatus();
      if (state.tab === "overview") A.loadHealth(); else A.loadProtection();  // the banner shows on every page
    }, 5000);
    setInterval(function () {  // the 分时 line and today's bar of a stock that is not held
      if (state.tab === "positions" && state.chartCode && !document.hidden) A.loadIntraday();
    }, 3000);
  }


  document.addEventListener("DOMContentLoaded", init);
})();
