/* Under the account supervisor only (the supervisor adds this script to the page): the account switcher in
   the header and the 「账户总览」 page — every account's process and trading state, assets, day P&L, positions,
   pending signals, link and alarms, totals, per-account and all-account actions, and all accounts on one chart:
   each account's return in % from the start of its range (accounts of different sizes compare), or its total
   assets as an option. The other pages keep working for the selected account (common.js apiUrl). */
(function () {
  "use strict";

  var Q = window.Qmt;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, fmtMoney = Q.fmtMoney, fmtInt = Q.fmtInt;
  var signClass = Q.signClass, show = Q.show, showError = Q.showError, confirmDialog = Q.confirmDialog;
  var fmtPct = Q.fmtPct;
  if (!Q.accountIds.length) return;

  var COLORS = ["#2463d1", "#d9342b", "#138a4f", "#b7791f", "#7b3fc4", "#0f8a9c"];
  var MODE_LABELS = { simulation: "模拟", live: "实盘" };
  var ACTION_LABELS = { start: "启动", stop: "停止", restart: "重启", pause: "暂停自动交易", resume: "恢复交易",
                        emergency_stop: "紧急停止" };
  var ACTION_TEXT = {
    start: "启动该账户的守护进程？",
    stop: "停止该账户的守护进程（安全退出：在途委托记账、最后一次同步持仓）？",
    restart: "重启该账户的守护进程？",
    pause: "暂停自动交易：信号继续检测并排队，手动委托不受影响。确认？",
    resume: "恢复交易：自动交易将按「自动交易」开关执行。确认？",
    emergency_stop: "紧急停止：不再产生任何新委托（只允许经确认的手动卖出），并撤销全部未完成委托；重启后仍保持停止。确认？"
  };
  var timer = null;
  var names = {};  // account id → display name (from /api/accounts)
  var chartView = "return";  // "return": % from each account's first point in range; "asset": total assets
  var lastSeries = null;

  // ---- header: the account switcher ----------------------------------------------------------------
  function buildSwitcher() {
    var label = make("label", "account-switch");
    label.appendChild(make("span", null, "账户"));
    var select = make("select");
    select.id = "account-switch";
    Q.accountIds.forEach(function (id) {
      var option = make("option", null, id);
      option.value = id;
      option.selected = id === Q.account();
      select.appendChild(option);
    });
    select.addEventListener("change", function () {
      Q.selectAccount(select.value);
      location.reload();
    });
    label.appendChild(select);
    var brand = document.querySelector(".topbar .brand");
    brand.parentNode.insertBefore(label, brand.nextSibling);
    Q.get("/api/accounts").then(learnNames, function () {});  // every page: the switcher shows names
  }

  function learnNames(data) {
    var changed = false;
    (data.accounts || []).forEach(function (a) {
      if (a.name && names[a.id] !== a.name) { names[a.id] = a.name; changed = true; }
    });
    if (changed && lastSeries) drawEquity(lastSeries);  // the chart may have been drawn before the names came
    var select = $("account-switch");
    if (!select) return;
    Array.prototype.forEach.call(select.options, function (option) {
      option.textContent = displayName(option.value);
      option.title = option.value;
    });
  }

  function displayName(id) { return names[id] && names[id] !== id ? names[id] : id; }

  // ---- the overview page -----------------------------------------------------------------------------
  function buildPage() {
    var link = make("a", null, "账户总览");
    link.href = "#accounts";
    link.setAttribute("data-tab", "accounts");
    var tabs = $("tabs");
    tabs.insertBefore(link, tabs.firstChild);

    var section = make("section", "tab");
    section.id = "tab-accounts";
    section.hidden = true;
    var cards = make("div", "cards");
    cards.id = "accounts-totals";
    section.appendChild(cards);

    var panel = make("div", "panel");
    panel.appendChild(make("h2", null, "全部账户"));
    var bar = make("div", "actions");
    ["pause", "resume", "emergency_stop"].forEach(function (action) {
      var button = make("button", action === "emergency_stop" ? "danger" : null, "全部" + ACTION_LABELS[action]);
      button.type = "button";
      button.id = "accounts-all-" + action;
      button.addEventListener("click", function () { act("all", action); });
      bar.appendChild(button);
    });
    panel.appendChild(bar);
    var msg = make("div", "msg");
    msg.id = "accounts-msg";
    msg.hidden = true;
    panel.appendChild(msg);
    var wrap = make("div", "table-wrap");
    var table = make("table", "table");
    var head = make("tr");
    ["账户", "模式", "进程", "交易状态", "总资产", "今日盈亏", "持仓数", "待执行信号", "券商连接", "市场时间", "告警",
     "操作"].forEach(function (title) { head.appendChild(make("th", null, title)); });
    var thead = make("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = make("tbody");
    body.id = "accounts-body";
    table.appendChild(body);
    wrap.appendChild(table);
    panel.appendChild(wrap);
    section.appendChild(panel);

    var chartPanel = make("div", "panel");
    chartPanel.appendChild(make("h2", null, "各账户收益对比（按市场时间）"));
    var viewBar = make("div", "actions");
    var viewLabel = make("label", null, "纵轴 ");
    var viewSelect = make("select");
    viewSelect.id = "accounts-chart-view";
    [["return", "收益率（%，自区间起点）"], ["asset", "总资产（元）"]].forEach(function (item) {
      var option = make("option", null, item[1]);
      option.value = item[0];
      viewSelect.appendChild(option);
    });
    viewSelect.addEventListener("change", function () {
      chartView = viewSelect.value;
      if (lastSeries) drawEquity(lastSeries);
    });
    viewLabel.appendChild(viewSelect);
    viewBar.appendChild(viewLabel);
    chartPanel.appendChild(viewBar);
    var chart = make("div", "accounts-chart");
    chart.id = "accounts-chart";
    chartPanel.appendChild(chart);
    section.appendChild(chartPanel);
    var main = document.querySelector("main");
    main.insertBefore(section, main.firstChild);
  }

  function load() {
    if (timer) clearTimeout(timer);
    Q.get("/api/accounts").then(render, function (err) { showError("accounts-msg", err); });
    Q.get("/api/accounts/equity").then(drawEquity, function () {});
    timer = setTimeout(function () { if (location.hash === "#accounts") load(); }, 3000);
  }

  function render(data) {
    learnNames(data);
    renderTotals(data.totals);
    var body = $("accounts-body");
    clear(body);
    data.accounts.forEach(function (a) { body.appendChild(accountRow(a)); });
    if (data.alarms && data.alarms.length) show("accounts-msg", data.alarms[data.alarms.length - 1], "error");
  }

  function renderTotals(t) {
    var cards = $("accounts-totals");
    clear(cards);
    [["合计总资产", fmtMoney(t.total_asset), ""], ["合计今日盈亏", fmtMoney(t.today_pnl), signClass(t.today_pnl)],
     ["运行中账户", t.running + " / " + t.accounts, ""], ["持仓数 / 待执行信号", fmtInt(t.positions_count) + " / " +
     fmtInt(t.pending_signals), ""]].forEach(function (item) {
      var card = make("div", "card");
      card.appendChild(make("div", "label", item[0]));
      card.appendChild(make("div", "value " + item[2], item[1]));
      cards.appendChild(card);
    });
  }

  function accountRow(a) {
    var row = make("tr");
    row.setAttribute("data-account", a.id);
    var name = cell(row, a.name + "（" + a.id + "）");
    if (a.id === Q.account()) name.appendChild(make("span", "badge sim", "当前"));
    cell(row, MODE_LABELS[a.mode] || a.mode);
    cell(row, a.state_label + (a.restarts ? "，已重启 " + a.restarts + " 次" : ""), "account-state");
    cell(row, a.trading_state ? a.trading_state.label : "--", "trading-state");
    cell(row, a.total_asset == null ? "--" : fmtMoney(a.total_asset), "num");
    cell(row, a.today_pnl == null ? "--" : fmtMoney(a.today_pnl), "num " + signClass(a.today_pnl));
    cell(row, a.positions_count == null ? "--" : fmtInt(a.positions_count), "num");
    cell(row, a.pending_signals == null ? "--" : fmtInt(a.pending_signals), "num");
    cell(row, a.link || (a.error ? "无法访问" : "--"));
    cell(row, a.market_time ? String(a.market_time).replace("T", " ") : "--");
    cell(row, (a.alarms || []).concat(a.error ? [a.error] : []).join("；") || "无", (a.alarms || []).length ? "down" : "");
    var actions = cell(row, "");
    ["start", "stop", "restart", "pause", "resume", "emergency_stop"].forEach(function (action) {
      var button = make("button", "small" + (action === "emergency_stop" ? " danger" : ""), ACTION_LABELS[action]);
      button.type = "button";
      button.addEventListener("click", function () { act(a.id, action); });
      actions.appendChild(button);
    });
    return row;
  }

  function act(id, action) {
    var who = id === "all" ? "全部账户" : "账户 " + id;
    confirmDialog(ACTION_LABELS[action] + "（" + who + "）", ACTION_TEXT[action]).then(function (yes) {
      if (!yes) return;
      var body = action === "resume" ? { confirm: true } : {};
      Q.post("/api/accounts/" + encodeURIComponent(id) + "/" + action, body).then(function (r) {
        show("accounts-msg", r.message, "ok");
        load();
      }, function (err) { showError("accounts-msg", err); load(); });
    });
  }

  // ---- equity curves (SVG, one line per account) ------------------------------------------------------
  /* Each account's curve spans the chart's width over its own market-time range: replayed accounts on one
     replay share that range, while a live account (today's dates) is not squeezed into a corner. In the return
     view each curve is (assets / assets at its first point − 1) × 100, so a 200,000 live account and two
     1,000,000 sim accounts share one readable axis. */
  function plotted(points) {
    if (chartView === "asset") return points;
    var base = points[0][1];
    if (!(base > 0)) return [];
    return points.map(function (p) { return [p[0], (p[1] / base - 1) * 100]; });
  }

  function fmtValue(v) { return chartView === "asset" ? fmtMoney(v) : fmtPct(v); }

  function drawEquity(series) {
    lastSeries = series;
    var box = $("accounts-chart");
    clear(box);
    var curves = {};
    Object.keys(series).forEach(function (id) {
      if (series[id].length > 1) curves[id] = plotted(series[id]);
    });
    var ids = Object.keys(curves).filter(function (id) { return curves[id].length > 1; });
    if (!ids.length) { box.appendChild(make("div", "muted", "暂无数据：各账户运行后按市场时间记录资产")); return; }
    var values = chartView === "asset" ? [] : [0];
    ids.forEach(function (id) { curves[id].forEach(function (p) { values.push(p[1]); }); });
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    if (hi === lo) { hi += 1; lo -= 1; }
    var W = 800, H = 260, pad = 8;
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("class", "equity-svg");
    var legend = make("div", "legend");
    if (chartView === "return") {  // the 0 % line: where each account started
      var zero = document.createElementNS(ns, "line");
      var zy = (H - pad - (H - 2 * pad) * (0 - lo) / (hi - lo)).toFixed(1);
      zero.setAttribute("x1", pad); zero.setAttribute("x2", W - pad);
      zero.setAttribute("y1", zy); zero.setAttribute("y2", zy);
      zero.setAttribute("stroke", "#9aa4b2"); zero.setAttribute("stroke-dasharray", "4 4");
      zero.setAttribute("class", "zero-line");
      svg.appendChild(zero);
    }
    ids.forEach(function (id, i) {
      var points = curves[id];
      var t0 = Date.parse(points[0][0]), t1 = Date.parse(points[points.length - 1][0]);
      var line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", points.map(function (p) {
        var x = pad + (W - 2 * pad) * (Date.parse(p[0]) - t0) / Math.max(1, t1 - t0);
        var y = H - pad - (H - 2 * pad) * (p[1] - lo) / (hi - lo);
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", COLORS[i % COLORS.length]);
      line.setAttribute("stroke-width", "2");
      line.setAttribute("data-account", id);
      svg.appendChild(line);
      var last = points[points.length - 1][1];
      var item = make("span", "legend-item", displayName(id) + "：" + fmtValue(last) +
        (chartView === "return" ? "（总资产 " + fmtMoney(series[id][series[id].length - 1][1]) + "）" : "") + "（" +
        points[0][0].replace("T", " ") + " ~ " + points[points.length - 1][0].replace("T", " ") + "）");
      item.setAttribute("data-account", id);
      item.style.borderLeftColor = COLORS[i % COLORS.length];
      legend.appendChild(item);
    });
    box.appendChild(svg);
    legend.appendChild(make("span", "muted", "纵轴 " + fmtValue(lo) + " ~ " + fmtValue(hi) +
      (chartView === "return" ? "（各账户相对自己区间起点的收益率）" : "") + "；横轴为各账户自己的市场时间范围"));
    box.appendChild(legend);
  }

  buildSwitcher();
  buildPage();
  Q.registerPage("accounts", load);  // before app.js shows the first page (the supervisor appends this script)
})();
