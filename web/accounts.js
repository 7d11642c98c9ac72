/* Under the account supervisor only (the supervisor adds this script to the page): the account switcher in
   the header and the 「账户总览」 page — every account's process and trading state, assets, day P&L, positions,
   pending signals, link and alarms, totals, per-account and all-account actions, and the equity curves of all
   accounts on one chart. The other pages keep working for the selected account (common.js apiUrl). */
(function () {
  "use strict";

  var Q = window.Qmt;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, fmtMoney = Q.fmtMoney, fmtInt = Q.fmtInt;
  var signClass = Q.signClass, show = Q.show, showError = Q.showError, confirmDialog = Q.confirmDialog;
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
  }

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
    chartPanel.appendChild(make("h2", null, "资产曲线（各账户，按市场时间）"));
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
     replay share that range, while a live account (today's dates) is not squeezed into a corner. */
  function drawEquity(series) {
    var box = $("accounts-chart");
    clear(box);
    var ids = Object.keys(series).filter(function (id) { return series[id].length > 1; });
    if (!ids.length) { box.appendChild(make("div", "muted", "暂无数据：各账户运行后按市场时间记录资产")); return; }
    var values = [];
    ids.forEach(function (id) { series[id].forEach(function (p) { values.push(p[1]); }); });
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    if (hi === lo) { hi += 1; lo -= 1; }
    var W = 800, H = 260, pad = 8;
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("class", "equity-svg");
    var legend = make("div", "legend");
    ids.forEach(function (id, i) {
      var points = series[id];
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
      var item = make("span", "legend-item", id + "：" + fmtMoney(points[points.length - 1][1]) + "（" +
        points[0][0].replace("T", " ") + " ~ " + points[points.length - 1][0].replace("T", " ") + "）");
      item.style.borderLeftColor = COLORS[i % COLORS.length];
      legend.appendChild(item);
    });
    box.appendChild(svg);
    legend.appendChild(make("span", "muted", "纵轴 " + fmtMoney(lo) + " ~ " + fmtMoney(hi) + "；横轴为各账户自己的市场时间范围"));
    box.appendChild(legend);
  }

  buildSwitcher();
  buildPage();
  Q.registerPage("accounts", load);  // before app.js shows the first page (the supervisor appends this script)
})();
