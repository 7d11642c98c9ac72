/* miniQMT web UI: talks only to the JSON API (DESIGN §11). Live positions arrive over server-sent events read
   with fetch (so the API token travels in a header, never in a URL). Every API error is shown where the user
   acted. No framework, no build step. */
(function () {
  "use strict";

  var Q = window.Qmt;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, digitsOf = Q.digitsOf, fmtPrice = Q.fmtPrice;
  var fmtMoney = Q.fmtMoney, fmtInt = Q.fmtInt, fmtPct = Q.fmtPct, signClass = Q.signClass, fmtTime = Q.fmtTime;
  var jsonText = Q.jsonText, numberField = Q.numberField, show = Q.show, showError = Q.showError;
  var errorText = Q.errorText, headers = Q.headers, ApiError = Q.ApiError, get = Q.get, post = Q.post;
  var confirmDialog = Q.confirmDialog;

  // ---- state -------------------------------------------------------------------------------------
  var state = { snapshot: null, status: null, tab: "overview", chartCode: "", today: "", chartMode: "k" };

  // ---- tabs --------------------------------------------------------------------------------------
  var loaders = {
    overview: function () { loadStatus(); loadHealth(); },
    positions: function () { if (state.chartCode) loadChart(state.chartCode); },
    orders: loadOrders, trades: loadTrades, signals: loadSignals, pool: loadPool, grid: loadGrid,
    trade: function () {}
  };

  /* The one router: the pages of this file are in `loaders`; pages in their own files register with
     Qmt.registerPage (common.js). */
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

  // ---- status, account, clock, health ------------------------------------------------------------
  var SWITCHES = [
    ["ENABLE_AUTO_TRADING", "自动交易", "开启后检测到的信号自动下单；关闭时信号排队等待人工执行"],
    ["ENABLE_ALLOW_BUY", "允许买入", ""],
    ["ENABLE_ALLOW_SELL", "允许卖出", ""],
    ["ENABLE_DYNAMIC_STOP_PROFIT", "止盈止损", "止损、首次止盈、动态止盈规则"],
    ["ENABLE_GRID_TRADING", "网格交易", ""]
  ];

  function loadStatus() {
    return get("/api/status").then(function (s) {
      state.status = s;
      renderStatus(s);
    }, function (err) { showError("global-msg", err); });
  }

  function renderStatus(s) {
    var mode = $("mode-badge");
    mode.textContent = s.mode_label + "交易";
    mode.className = "badge " + (s.mode === "live" ? "live" : "sim");
    var src = $("source-badge");
    src.textContent = "行情：" + (s.data_source.label || s.data_source.source);
    src.className = "badge" + (s.data_source.synthetic ? " demo" : "");
    $("demo-banner").hidden = !s.data_source.synthetic;
    var ts = s.trading_state;  // paused / halted (e.g. 「磁盘已满」, a circuit breaker) with its reason
    $("state-banner").hidden = !ts || ts.state === "running";
    $("state-banner").textContent = ts ? ts.label + "：" + (ts.reason || "") : "";
    renderClock(s.clock);
    renderAccount(s.account);
    $("acc-counts").textContent = s.positions_count + " / " + s.pending_signals;
    renderSwitches(s.switches, s.run_overrides || []);
    if (window.QmtOperator) QmtOperator.renderState(s.trading_state);
    $("signals-auto-note").textContent = s.switches.ENABLE_AUTO_TRADING
      ? "自动交易已开启：信号由策略线程自动执行。" : "自动交易已关闭：信号排队等待，可点击“执行”人工执行。";
  }

  function renderClock(c) {
    if (!c) return;
    $("clock").textContent = fmtTime(c.time) + (c.is_replay ? "（回放时钟）" : "");
    state.today = String(c.time || "").slice(0, 10);
    $("session").textContent = c.session_label;
    $("calendar-banner").hidden = !c.calendar_warning;
    $("calendar-banner").textContent = c.calendar_warning || "";
  }

  function renderAccount(a) {
    if (!a) return;
    if (!a.available) {
      show("account-error", "账户信息不可用：" + (a.error || ""), "error");
      return;
    }
    show("account-error", "");
    $("acc-total").textContent = fmtMoney(a.total_asset);
    $("acc-cash").textContent = fmtMoney(a.cash);
    $("acc-frozen").textContent = fmtMoney(a.frozen_cash);
    $("acc-mv").textContent = fmtMoney(a.market_value);
    var pnl = $("acc-pnl");
    pnl.textContent = a.today_pnl == null ? "--" : (a.today_pnl > 0 ? "+" : "") + fmtMoney(a.today_pnl);
    pnl.className = "value " + signClass(a.today_pnl);
  }

  function renderSwitches(values, fixed) {
    var box = $("switches");
    if (!box.childElementCount) {
      SWITCHES.forEach(function (sw) {
        var label = make("label", "switch");
        var input = make("input");
        input.type = "checkbox";
        input.id = "switch-" + sw[0];
        input.setAttribute("data-key", sw[0]);
        input.addEventListener("change", onSwitch);
        label.appendChild(input);
        label.appendChild(make("span", null, sw[1]));
        if (sw[2]) label.appendChild(make("span", "meaning", sw[2]));
        box.appendChild(label);
      });
    }
    SWITCHES.forEach(function (sw) {
      var input = $("switch-" + sw[0]);
      var byCommandLine = (fixed || []).indexOf(sw[0]) >= 0;
      if (input.getAttribute("data-busy") !== "1") {
        input.checked = !!values[sw[0]];
        input.disabled = byCommandLine;
      }
      input.parentNode.title = byCommandLine ? "本次运行由命令行指定（--set），网页修改不会生效" : "";
      input.parentNode.classList.toggle("fixed", byCommandLine);
    });
  }

  function onSwitch(ev) {
    var input = ev.target, key = input.getAttribute("data-key"), wanted = input.checked;
    var name = input.parentNode.children[1].textContent;
    var ask = key === "ENABLE_AUTO_TRADING" && wanted
      ? confirmDialog("开启自动交易", "开启后，检测到的交易信号将自动下单" +
        (state.status && state.status.mode === "live" ? "（实盘账户！）" : "") + "。确认开启？")
      : Promise.resolve(true);
    ask.then(function (yes) {
      if (!yes) { input.checked = !wanted; return; }
      input.disabled = true;
      input.setAttribute("data-busy", "1");
      var changes = {}; changes[key] = wanted;
      post("/api/config/update", { changes: changes }).then(function () {
        show("switch-msg", name + "已" + (wanted ? "开启" : "关闭"), "ok");
        input.disabled = false;
        input.removeAttribute("data-busy");
        loadStatus();
      }, function (err) {
        input.disabled = false;
        input.removeAttribute("data-busy");
        input.checked = !wanted;
        showError("switch-msg", err);
      });
    });
  }

  /* issue 25: the red 「保护失效」 banner names each stock and cause while protection is not ok (health's
     `protection`; null where the daemon runs no protection check). */
  function renderProtection(p) {
    var banner = $("protection-banner");
    var failing = !!p && !p.ok;
    banner.hidden = !failing;
    if (!failing) { banner.textContent = ""; return; }
    banner.textContent = "保护失效：" + p.failures.map(function (f) {
      return (f.stock_code || "全部持仓") + "（" + f.cause_label + "）" + (f.reason ? "：" + f.reason : "");
    }).join("；");
  }

  function loadProtection() {
    // a failed request shows through loadStatus, which polls with it
    get("/api/health").then(function (h) { renderProtection(h.protection); }, function () {});
  }

  function loadHealth() {
    get("/api/health").then(function (h) {
      renderProtection(h.protection);
      var body = $("health-body");
      clear(body);
      h.threads.forEach(function (t) {
        var tr = make("tr");
        cell(tr, Q.threadLabel(t.name)).title = t.name;
        cell(tr, t.alive ? "运行中" : "异常", t.alive ? "ok-dot" : "bad-dot");
        cell(tr, t.seconds_since_beat == null ? "--" : Number(t.seconds_since_beat).toFixed(1) + " 秒");
        cell(tr, String(t.restarts));
        cell(tr, t.alarm || "", t.alarm ? "bad-dot" : "");
        body.appendChild(tr);
      });
      if (!h.threads.length) { var tr = make("tr"); cell(tr, "没有线程信息", "muted").colSpan = 5; body.appendChild(tr); }
    }, function (err) { showError("global-msg", err); });
    get("/api/connection/status").then(function (c) {
      var broker = c.broker.connected === null ? "未知" : (c.broker.connected ? "已连接" : "未连接");
      var anomalies = c.broker.anomalies || [];  // live broker only (issue 13)
      var lastAnomaly = anomalies.length ? anomalies[anomalies.length - 1] : null;
      $("conn-info").textContent = "券商（" + c.broker.mode_label + "）：" + broker + (c.broker.error ? "（" + c.broker.error + "）" : "") +
        (c.broker.link_label ? "，链路" + c.broker.link_label : "") +
        "；行情（" + (c.data.label || c.data.source) + "）：" + (c.data.connected ? "正常" : "未连接") +
        (c.data.last_error ? "（" + c.data.last_error + "）" : "") +
        (lastAnomaly ? "；券商异常 " + c.broker.anomaly_count + " 次，最近：" + lastAnomaly.time + " " + lastAnomaly.message : "");
    }, function (err) { showError("global-msg", err); });
  }

  // ---- positions (live) --------------------------------------------------------------------------
  var rows = {};
  var POS_COLUMNS = 15;

  function renderPositions(snapshot) {
    state.snapshot = snapshot;
    $("pos-version").textContent = "更新于 " + new Date().toLocaleTimeString("zh-CN", { hour12: false });
    var body = $("positions-body");
    var seen = {};
    if (!snapshot.positions.length) {
      rows = {};
      clear(body);
      var tr = make("tr"); cell(tr, "当前没有持仓", "muted").colSpan = POS_COLUMNS; body.appendChild(tr);
      return;
    }
    if (body.querySelector("td[colspan]")) clear(body);
    snapshot.positions.forEach(function (p) {
      seen[p.stock_code] = true;
      var row = rows[p.stock_code];
      if (!row) {
        row = rows[p.stock_code] = newPositionRow(p.stock_code);
      }
      body.appendChild(row.tr);  // keeps the order of the snapshot (by code)
      updatePositionRow(row, p);
    });
    Object.keys(rows).forEach(function (code) {
      if (!seen[code]) { body.removeChild(rows[code].tr); delete rows[code]; }
    });
    if (state.chartCode && state.tab === "positions") applyLevels();
  }

  function newPositionRow(code) {
    var tr = make("tr");
    tr.setAttribute("data-code", code);
    var cells = [];
    var heads = document.querySelectorAll("#positions-table thead th");  // labels of the phone's card layout
    for (var i = 0; i < POS_COLUMNS - 1; i++) {
      cells.push(cell(tr, "", i >= 2 ? "num" : ""));
      cells[i].setAttribute("data-label", heads[i] ? heads[i].textContent : "");
    }
    var actions = cell(tr, "", "actions-cell");
    var chartBtn = make("button", "small", "图表");
    chartBtn.type = "button";
    chartBtn.addEventListener("click", function () { openChart(code); });
    var half = make("button", "small sell", "卖出一半");
    half.type = "button";
    half.setAttribute("data-action", "sell-half");
    half.addEventListener("click", function () { sellFromRow(code, 0.5); });
    var all = make("button", "small sell", "全部卖出");
    all.type = "button";
    all.setAttribute("data-action", "sell-all");
    all.addEventListener("click", function () { sellFromRow(code, 1); });
    var params = make("button", "small", "参数");
    params.type = "button";
    params.title = "个股参数（止损、止盈、补仓等）与持仓规则状态";
    params.setAttribute("data-action", "stock-params");
    params.addEventListener("click", function () { if (window.QmtWatch) window.QmtWatch.editStock(code); });
    actions.appendChild(chartBtn); actions.appendChild(document.createTextNode(" "));
    actions.appendChild(params); actions.appendChild(document.createTextNode(" "));
    actions.appendChild(half); actions.appendChild(document.createTextNode(" "));
    actions.appendChild(all);
    return { tr: tr, cells: cells, buttons: [half, all] };
  }

  /* 「下一补仓价」: 第N档 and its price; 「额度不足」 when the budget buys no lot there; unreachable below the stop. */
  function nextAddText(a, code) {
    if (!a) return "--";
    if (a.state === "budget_short") return "额度不足";
    return fmtPrice(a.price, code) + "（" + a.label + (a.state === "below_stop" ? "，低于止损价，无法到达" : "") + "）";
  }

  function updatePositionRow(row, p) {
    var c = row.cells, code = p.stock_code, t = p.trigger_prices || {};
    var values = [
      code, p.stock_name || code, fmtInt(p.volume), fmtInt(p.available), fmtPrice(p.cost_price, code),
      fmtPrice(p.current_price, code), fmtPct(p.profit_ratio), p.profit_amount == null ? "--" : fmtMoney(p.profit_amount),
      fmtMoney(p.market_value), fmtPrice(p.highest_price, code), fmtPrice(t.stop_loss_price, code),
      fmtPrice(t.take_profit_price, code), fmtPrice(t.dynamic_stop_price, code),
      nextAddText(p.next_add, code)
    ];
    values.forEach(function (v, i) { if (c[i].textContent !== v) c[i].textContent = v; });
    c[13].title = p.next_add ? p.next_add.explain : "";
    c[13].setAttribute("data-add-state", p.next_add ? p.next_add.state : "none");
    c[5].className = "num " + signClass(p.profit_ratio);
    c[6].className = "num " + signClass(p.profit_ratio);
    c[7].className = "num " + signClass(p.profit_amount);
    row.buttons.forEach(function (b) { b.disabled = !(p.available > 0); });
    row.buttons.forEach(function (b) { b.title = p.available > 0 ? "" : "没有可卖数量（T+1）"; });
  }

  function sellFromRow(code, ratio) {
    var p = (state.snapshot.positions || []).filter(function (x) { return x.stock_code === code; })[0];
    var what = QmtOperator.sellText(code, p ? p.available : 0, ratio) + "。";
    checkThenConfirm("sell", { stock_code: code, ratio: ratio, confirm: true }, "pos-msg", "确认卖出",
      what + QmtOperator.haltNote())
      .then(function (yes) {
        if (!yes) return;
        post("/api/actions/execute_sell", { stock_code: code, ratio: ratio, confirm: true }).then(function (order) {
          show("pos-msg", "卖出委托已提交：" + orderSummary(order), "ok");
        }, function (err) { showError("pos-msg", err); });
      });
  }

  function orderSummary(o) {
    var text = (o.side_label || "") + " " + o.stock_code + " " + fmtInt(o.volume) + " 股，委托价 " +
      fmtPrice(o.price, o.stock_code) + "，委托号 " + (o.client_id || o.order_id || "") + "，状态 " + (o.status_label || o.status);
    if (o.filled_volume > 0) {
      text += "，已成交 " + fmtInt(o.filled_volume) + " 股，均价 " + fmtPrice(o.filled_amount / o.filled_volume, o.stock_code);
    }
    return text;
  }

  // ---- live stream -------------------------------------------------------------------------------
  var streamRefresh = null;

  function setLive(on, text) {
    var node = $("live-state");
    node.className = "live " + (on ? "on" : "off");
    node.textContent = "● " + text;
  }

  function openStream() {
    Q.eventStream(function () { return "/api/positions/stream"; }, handleEvent, function (on, text) {
      setLive(on, text.length > 30 ? "已断开，重连中…" : text);
      if (!on && text.indexOf("令牌") >= 0) showError("global-msg", { message: text });
    });
  }

  function handleEvent(event, payload) {
    if (event === "positions") {
      renderPositions(payload);
      renderAccount(payload.account);
      renderClock(payload.clock);
      scheduleTabRefresh();
    } else if (event === "heartbeat") {
      if (payload.time) $("clock").textContent = fmtTime(payload.time) +
        (state.status && state.status.clock.is_replay ? "（回放时钟）" : "");
    } else if (event === "bus") {  // event-bus events (watch alerts…): web/watch.js and others listen
      document.dispatchEvent(new CustomEvent("qmt:bus", { detail: payload }));
    } else if (event === "error") {
      setLive(false, payload.message);
    }
    Q.emitStream(event, payload);
  }

  /* Fills change positions: the orders, trades and signals tabs follow at most once a second. */
  function scheduleTabRefresh() {
    if (streamRefresh) return;
    streamRefresh = setTimeout(function () {
      streamRefresh = null;
      if (state.tab === "orders") loadOrders();
      else if (state.tab === "trades") loadTrades();
      else if (state.tab === "signals") loadSignals();
      else if (state.tab === "grid") loadGrid();
    }, 1000);
  }

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

  // ---- orders ------------------------------------------------------------------------------------
  var OPEN_STATES = ["pending_submit", "submitted", "open", "partially_filled", "unknown"];

  function formQuery(form) {
    var params = [];
    Array.prototype.forEach.call(form.elements, function (e) {
      if (e.name && e.value.trim()) params.push(encodeURIComponent(e.name) + "=" + encodeURIComponent(e.value.trim()));
    });
    return params.length ? "?" + params.join("&") : "";
  }

  function loadOrders() {
    get("/api/orders" + formQuery($("orders-form"))).then(function (list) {
      var body = $("orders-body");
      clear(body);
      list.forEach(function (o) {
        var tr = make("tr");
        tr.setAttribute("data-order", o.client_id || o.order_id || "");
        cell(tr, fmtTime(o.time || o.created_at));
        cell(tr, o.client_id || o.order_id || "");
        cell(tr, o.stock_code);
        cell(tr, o.side_label || o.side, o.side === "buy" ? "up" : "down");
        cell(tr, fmtPrice(o.price, o.stock_code), "num");
        cell(tr, fmtInt(o.volume), "num");
        cell(tr, fmtInt(o.filled_volume), "num");
        cell(tr, o.status_label || o.status);
        cell(tr, o.rule_label || o.rule || "");
        cell(tr, o.reason || "");
        var actions = cell(tr, "");
        if (OPEN_STATES.indexOf(o.status) >= 0) {
          var b = make("button", "small", "撤单");
          b.type = "button";
          b.addEventListener("click", function () { cancelOrder(o.client_id || o.order_id); });
          actions.appendChild(b);
        }
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有符合条件的委托", "muted").colSpan = 11; body.appendChild(tr); }
    }, function (err) { showError("orders-msg", err); });
  }

  function cancelOrder(id) {
    confirmDialog("确认撤单", "撤销委托 " + id + "？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/cancel_order", { order_id: id }).then(function (r) {
        show("orders-msg", r.message, "ok");
        loadOrders();
      }, function (err) { showError("orders-msg", err); });
    });
  }

  // ---- trade records -----------------------------------------------------------------------------
  function loadTrades() {
    get("/api/trade-records" + formQuery($("trades-form"))).then(function (list) {
      var body = $("trades-body");
      clear(body);
      list.forEach(function (r) {
        var tr = make("tr");
        cell(tr, fmtTime(r.trade_time || r.time));
        cell(tr, r.stock_code);
        cell(tr, r.stock_name || r.stock_code);
        cell(tr, r.side_label || r.side, r.side === "buy" ? "up" : "down");
        cell(tr, fmtPrice(r.price, r.stock_code), "num");
        cell(tr, fmtInt(r.volume), "num");
        cell(tr, fmtMoney(r.amount), "num");
        cell(tr, fmtMoney(r.fees != null ? r.fees : r.commission), "num");
        cell(tr, r.rule_label || r.rule || r.strategy || "");
        cell(tr, r.client_id || r.order_id || "");
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有成交记录", "muted").colSpan = 10; body.appendChild(tr); }
      show("trades-msg", "");
    }, function (err) { showError("trades-msg", err); });
  }

  function exportTrades() {
    var query = formQuery($("trades-form"));
    var url = "/api/trade-records" + (query ? query + "&" : "?") + "format=csv";
    fetch(Q.apiUrl(url), { headers: headers({ "Accept": "text/csv" }), cache: "no-store" }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (p) { throw new ApiError(response.status, p, "导出失败"); });
      }
      return response.blob().then(function (blob) {
        var link = make("a");
        link.href = URL.createObjectURL(blob);
        link.download = "成交记录.csv";
        document.body.appendChild(link);
        link.click();
        setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
        show("trades-msg", "已导出 CSV", "ok");
      });
    }).catch(function (err) { showError("trades-msg", err); });
  }

  // ---- signals -----------------------------------------------------------------------------------
  function loadSignals() {
    var auto = state.status && state.status.switches.ENABLE_AUTO_TRADING &&
      (!state.status.trading_state || state.status.trading_state.state === "running");
    get("/api/signals/pending").then(function (list) {
      var body = $("signals-pending-body");
      clear(body);
      list.forEach(function (s) {
        var tr = make("tr");
        tr.setAttribute("data-signal", s.id);
        signalCells(tr, s);
        cell(tr, fmtPrice(s.observed_price, s.stock_code), "num");
        cell(tr, s.status_label);
        cell(tr, Math.round(s.age_seconds) + " 秒 / " + s.max_age + " 秒", "num");
        var actions = cell(tr, "");
        var b = make("button", "small primary", "执行");
        b.type = "button";
        b.disabled = !!auto;
        b.title = auto ? "自动交易已开启，信号会自动执行" : "按现价重新检查后执行该信号";
        b.addEventListener("click", function () { executeSignal(s); });
        actions.appendChild(b);
        [["忽略", false, "忽略这条信号"], ["本轮不再提示", true, "忽略，并在本轮持仓内不再提示同一信号"]].forEach(function (d) {
          var x = make("button", "small", d[0]);
          x.type = "button";
          x.title = d[2];
          x.setAttribute("data-dismiss", d[1] ? "snooze" : "once");
          x.addEventListener("click", function () { dismissSignal(s, d[1]); });
          actions.appendChild(x);
        });
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有待执行的信号", "muted").colSpan = 11; body.appendChild(tr); }
    }, function (err) { showError("signals-msg", err); });
    get("/api/signals/history?limit=200" + formQuery($("signals-filter")).replace(/^\?/, "&")).then(function (list) {
      var body = $("signals-history-body");
      clear(body);
      list.forEach(function (s) {
        var tr = make("tr");
        signalCells(tr, s);
        cell(tr, s.status_label, s.status === "executed" ? "ok-dot" : (s.status === "rejected" ? "bad-dot" : "muted"));
        cell(tr, s.reason || "");
        cell(tr, s.order_id || "");
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有历史信号", "muted").colSpan = 10; body.appendChild(tr); }
    }, function (err) { showError("signals-msg", err); });
  }

  function signalCells(tr, s) {
    cell(tr, "#" + s.id);
    cell(tr, fmtTime(s.created_at));
    cell(tr, s.stock_code);
    cell(tr, s.rule_label);
    cell(tr, s.side_label, s.side === "buy" ? "up" : "down");
    cell(tr, fmtInt(s.volume), "num");
    cell(tr, fmtPrice(s.trigger_price, s.stock_code), "num");
  }

  function dismissSignal(s, snooze) {
    post("/api/actions/dismiss_signal", { signal_id: s.id, snooze: snooze }).then(function (r) {
      show("signals-msg", "信号 #" + r.id + " 已忽略" + (snooze ? "，本轮持仓内不再提示" : ""), "ok");
      loadSignals();
    }, function (err) { showError("signals-msg", err); loadSignals(); });
  }

  function executeSignal(s) {
    confirmDialog("执行信号", "信号 #" + s.id + "：" + s.stock_code + " " + s.rule_label + "，" + s.side_label + " " +
      fmtInt(s.volume) + " 股（检测时价格 " + fmtPrice(s.observed_price, s.stock_code) + "）。将按现价重新检查条件，" +
      "仍成立则立即下单，否则显示不执行的原因。确认执行？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/execute_trading_signal", { signal_id: s.id }).then(function (r) {
        show("signals-msg", "信号 #" + r.id + " 已执行，委托号 " + r.order_id, "ok");
        loadSignals();
      }, function (err) { showError("signals-msg", err); loadSignals(); });
    });
  }

  // ---- manual trading ----------------------------------------------------------------------------
  function toggleBy(form, name) {
    var by = form.querySelector('input[name="' + name + '"]:checked').value;
    Array.prototype.forEach.call(form.querySelectorAll("[data-by]"), function (label) {
      label.hidden = label.getAttribute("data-by") !== by;
    });
    return by;
  }

  /* POST /api/actions/check_order: the server runs every pre-trade check of the real order (lot, limit
     prices, cash and position cap, available shares, trading state) without placing anything, so the page
     validates exactly as the order would be and shows 可买/可卖 before anything is confirmed. */
  function checkOrder(side, payload) {
    var body = { side: side };
    Object.keys(payload).forEach(function (k) { body[k] = payload[k]; });
    return post("/api/actions/check_order", body);
  }

  function capacityText(c) {
    if (c.max_volume == null) return c.ok ? "" : Q.errorText(c);
    var text = (c.side === "buy" ? "可买 " : "可卖 ") + fmtInt(c.max_volume) + " 股";
    if (c.side === "buy" && c.price) text += "（按委托价 " + fmtPrice(c.price, c.stock_code) + " 元，计入资金、单笔与仓位上限）";
    return text;
  }

  /* 可买 / 可卖 under a form, refreshed when its code (or limit price) changes; an old answer never
     overwrites a newer one. */
  function watchCapacity(form, side, box) {
    var asked = 0;
    function refresh() {
      var code = form.stock_code.value.trim();
      var seq = ++asked;
      $(box).textContent = "";
      if (!code) return;
      var body = { stock_code: code };
      var price = numberField(form.price.value);
      var by = form.querySelector('input[type="radio"]:checked').value;
      if (price !== undefined && by === "volume") body.price = price;  // a limit price goes with a volume only
      checkOrder(side, body).then(function (c) {
        if (seq === asked) $(box).textContent = capacityText(c);
      }, function (err) { if (seq === asked) $(box).textContent = Q.errorText(err); });
    }
    ["stock_code", "price"].forEach(function (name) { form[name].addEventListener("change", refresh); });
    Array.prototype.forEach.call(form.querySelectorAll('input[type="radio"]'), function (r) {
      r.addEventListener("change", refresh);
    });
    return refresh;
  }

  /* Check first; the dialog only ever shows an order that passes every check, with its real volume. */
  function checkThenConfirm(side, payload, msg, title, extra) {
    show(msg, "");
    return checkOrder(side, payload).then(function (c) {
      if (!c.ok) {
        var told = c.max_volume == null || /可买|可卖/.test(c.message);
        show(msg, Q.errorText(c) + (told ? "" : "；" + capacityText(c)), "error");
        return false;
      }
      return confirmDialog(title, c.side_label + " " + c.stock_code + "：" + fmtInt(c.volume) + " 股，委托价 " +
        fmtPrice(c.price, c.stock_code) + " 元，约 " + fmtMoney(c.amount) + " 元（" + capacityText(c) + "）。" +
        (extra || "") + "确认下单？");
    }, function (err) { showError(msg, err); return false; });
  }

  function submitBuy(ev) {
    ev.preventDefault();
    var form = ev.target, by = toggleBy(form, "buy_by");
    var payload = { stock_code: form.stock_code.value.trim() };
    if (by === "amount") {
      payload.amount = numberField(form.amount.value);
    } else {
      payload.volume = numberField(form.volume.value);
      var price = numberField(form.price.value);
      if (price !== undefined) payload.price = price;
    }
    checkThenConfirm("buy", payload, "buy-msg", "确认买入").then(function (yes) {
      if (!yes) return;
      post("/api/actions/execute_buy", payload).then(function (order) {
        show("buy-msg", "买入委托已提交：" + orderSummary(order), "ok");
      }, function (err) { showError("buy-msg", err); });
    });
  }

  function submitPoolBuy(ev) {
    ev.preventDefault();
    var form = ev.target;
    var payload = { from_pool: true, count: numberField(form.count.value) };
    var amount = numberField(form.amount.value);
    if (amount !== undefined) payload.amount = amount;
    confirmDialog("确认随机买入", "从股票池随机选 " + form.count.value.trim() + " 只未持有的股票买入？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/execute_buy", payload).then(function (r) {
        var lines = r.results.map(function (x) {
          return x.ok ? "✓ " + orderSummary(x.order) : "✗ " + x.stock_code + "：" + x.message;
        });
        show("pool-buy-msg", "已下单 " + r.placed + " / " + r.results.length + " 只\n" + lines.join("\n"),
          r.placed === r.results.length ? "ok" : "warn");
      }, function (err) { showError("pool-buy-msg", err); });
    });
  }

  function submitSell(ev) {
    ev.preventDefault();
    var form = ev.target, by = toggleBy(form, "sell_by");
    var payload = { stock_code: form.stock_code.value.trim(), confirm: true };
    if (by === "volume") {
      payload.volume = numberField(form.volume.value);
      var price = numberField(form.price.value);
      if (price !== undefined) payload.price = price;
    } else {
      payload.ratio = numberField(form.ratio.value);
    }
    checkThenConfirm("sell", payload, "sell-msg", "确认卖出", QmtOperator.haltNote()).then(function (yes) {
      if (!yes) return;
      post("/api/actions/execute_sell", payload).then(function (order) {
        show("sell-msg", "卖出委托已提交：" + orderSummary(order), "ok");
      }, function (err) { showError("sell-msg", err); });
    });
  }

  // ---- stock pool --------------------------------------------------------------------------------
  function loadPool() {
    get("/api/stock_pool").then(function (p) {
      $("pool-text").value = p.stocks.join("\n");
      $("pool-count").textContent = "共 " + p.count + " 只";
    }, function (err) { showError("pool-msg", err); });
  }

  function savePool() {
    var codes = $("pool-text").value.split(/[\s,，;；]+/).filter(function (c) { return c; });
    post("/api/stock_pool", { stocks: codes }).then(function (p) {
      $("pool-text").value = p.stocks.join("\n");
      $("pool-text").classList.remove("invalid");
      $("pool-count").textContent = "共 " + p.count + " 只";
      show("pool-msg", "股票池已保存：" + p.count + " 只", "ok");
    }, function (err) {
      $("pool-text").classList.add("invalid");
      var text = err.message;
      if (Array.isArray(err.errors) && err.errors.length > 1) text += "\n" + err.errors.join("\n");
      show("pool-msg", text, "error");
    });
  }

  // ---- grid --------------------------------------------------------------------------------------
  function loadGrid() {
    var on = state.status ? !!state.status.switches.ENABLE_GRID_TRADING : null;
    var note = $("grid-switch-state");
    note.textContent = on === null ? "" : (on ? "网格交易开关：已开启（运行中的网格按网格规则下单）"
      : "网格交易开关：已关闭（网格会话不会下单；启动网格时可一并开启）");
    note.className = on === false ? "msg warn" : "muted";
    get("/api/grid/sessions").then(function (list) {
      $("grid-form").hidden = false;
      var body = $("grid-body");
      clear(body);
      list.forEach(function (s) {
        var code = s.stock_code;
        var tr = make("tr");
        tr.setAttribute("data-grid", s.id);
        cell(tr, "#" + s.id);
        cell(tr, code);
        var idle = s.status === "active" && on === false;
        cell(tr, idle ? s.status_label + "（开关关闭，不交易）" : s.status_label,
          s.status === "active" && !idle ? "ok-dot" : "muted");
        cell(tr, fmtPrice(s.center_price, code), "num");
        cell(tr, s.status === "active" ? fmtPrice(s.next_buy_price, code) : "--", "num");
        cell(tr, s.status === "active" ? fmtPrice(s.next_sell_price, code) : "--", "num");
        cell(tr, fmtInt(s.net_volume), "num");
        cell(tr, fmtMoney(s.invested), "num");
        var why = s.pnl_explain || {};
        cell(tr, fmtMoney(s.round_trip_pnl), "num " + signClass(s.round_trip_pnl)).title = why.round_trip || "";
        cell(tr, fmtMoney(s.unrealized_pnl), "num " + signClass(s.unrealized_pnl)).title = why.unrealized || "";
        cell(tr, fmtMoney(s.fees), "num").title = why.fees || "";
        cell(tr, fmtMoney(s.total_pnl), "num " + signClass(s.total_pnl)).title = why.total || "";
        cell(tr, s.buy_count + " / " + s.sell_count, "num");
        cell(tr, s.start_date || "");
        cell(tr, s.end_reason_label || "");
        var actions = cell(tr, "");
        var fills = make("button", "small", "成交");
        fills.type = "button";
        fills.addEventListener("click", function () { loadGridTrades(s); });
        actions.appendChild(fills);
        if (s.status === "active") {
          var b = make("button", "small danger", "停止");
          b.type = "button";
          b.addEventListener("click", function () { stopGrid(s); });
          actions.appendChild(b);
        }
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有网格会话", "muted").colSpan = 16; body.appendChild(tr); }
      if (state.gridShown) {
        var shown = list.filter(function (s) { return s.id === state.gridShown; })[0];
        if (shown) loadGridTrades(shown);
      }
    }, function (err) {
      if (err.code === "GRID_UNAVAILABLE") $("grid-form").hidden = true;
      showError("grid-msg", err);
    });
  }

  function loadGridTrades(s) {
    state.gridShown = s.id;
    get("/api/grid/sessions/" + s.id + "/trades").then(function (trades) {
      $("grid-trades-panel").hidden = false;
      $("grid-trades-title").textContent = "网格 #" + s.id + " " + s.stock_code + " 的成交（网格盈亏 " +
        fmtMoney(s.total_pnl) + " 元）";
      var body = $("grid-trades-body");
      clear(body);
      trades.forEach(function (t) {
        var tr = make("tr");
        tr.setAttribute("data-grid-fill", t.fill_id);
        cell(tr, fmtTime(t.time));
        cell(tr, t.side_label || t.side, t.side === "buy" ? "up" : "down");
        cell(tr, fmtPrice(t.price, t.stock_code), "num");
        cell(tr, fmtInt(t.volume), "num");
        cell(tr, fmtMoney(t.amount), "num");
        cell(tr, fmtMoney(t.fees), "num");
        cell(tr, fmtInt(t.net_volume_after), "num");
        cell(tr, fmtMoney(t.realized_pnl_after), "num " + signClass(t.realized_pnl_after));
        body.appendChild(tr);
      });
      if (!trades.length) { var tr = make("tr"); cell(tr, "该网格还没有成交", "muted").colSpan = 8; body.appendChild(tr); }
    }, function (err) { showError("grid-msg", err); });
  }

  function stopGrid(s) {
    confirmDialog("停止网格", "停止 " + s.stock_code + " 的网格会话 #" + s.id + "？").then(function (yes) {
      if (!yes) return;
      post("/api/grid/sessions/" + s.id + "/stop").then(function () {
        show("grid-msg", "网格会话 #" + s.id + " 已停止", "ok");
        loadGrid();
      }, function (err) { showError("grid-msg", err); });
    });
  }

  function startGrid(ev) {
    ev.preventDefault();
    var form = ev.target;
    var payload = { stock_code: form.stock_code.value.trim() };
    ["GRID_STEP_RATIO", "GRID_BUY_AMOUNT", "GRID_MAX_INVESTMENT"].forEach(function (key) {
      var value = numberField(form[key].value);
      if (value !== undefined) payload[key] = value;
    });
    post("/api/grid/sessions", payload).then(function (s) {
      show("grid-msg", "已启动网格会话 #" + s.id + "：" + s.stock_code + " 中心价 " + fmtPrice(s.center_price, s.stock_code) +
        "，下一买入价 " + fmtPrice(s.next_buy_price, s.stock_code) + "，下一卖出价 " + fmtPrice(s.next_sell_price, s.stock_code), "ok");
      loadStatus().then(loadGrid);
    }, function (err) {
      if (err.code !== "GRID_TRADING_OFF") { showError("grid-msg", err); return; }
      // The switch is off: a session would never trade. Offer to switch it on, then start.
      confirmDialog("开启网格交易", err.message + "\n开启「网格交易」开关并启动这个网格？").then(function (yes) {
        if (!yes) { showError("grid-msg", err); return; }
        post("/api/config/update", { changes: { ENABLE_GRID_TRADING: true } }).then(function () {
          startGrid({ preventDefault: function () {}, target: form });
        }, function (e) { showError("grid-msg", e); });
      });
    });
  }

  /* On a stock code: the amount per grid the form proposes (one lot at the centre price at least). A new code
     first clears the previous code's hint and the amount the form filled in for it (an amount the person typed
     stays); an answer for an older code is dropped. */
  var gridAsked = 0;
  function proposeGrid() {
    var form = $("grid-form"), code = form.stock_code.value.trim(), amount = form.GRID_BUY_AMOUNT;
    var seq = ++gridAsked;
    show("grid-proposal", "");
    if (amount.getAttribute("data-proposed") === amount.value) amount.value = "";
    amount.removeAttribute("data-proposed");
    if (!code) return;
    get("/api/grid/proposal/" + encodeURIComponent(code)).then(function (p) {
      if (seq !== gridAsked) return;
      if (!p.enough && !amount.value.trim()) {
        amount.value = String(p.proposed_amount);
        amount.setAttribute("data-proposed", amount.value);
      }
      show("grid-proposal", p.enough ? "每格 " + p.configured_amount + " 元在中心价 " + fmtPrice(p.center_price, p.stock_code) +
        " 可买 " + Math.floor(p.configured_amount / p.center_price / p.lot) * p.lot + " 股" : p.message, p.enough ? "" : "warn");
    }, function (err) { if (seq === gridAsked) showError("grid-proposal", err); });
  }

  // ---- emergency stop ----------------------------------------------------------------------------
  function emergencyStop() {
    confirmDialog("紧急停止", "将立即进入「紧急停止」状态：不再产生任何新委托（只允许经确认的手动卖出），并撤销全部未完成委托；重启后仍保持停止，需明确「恢复交易」。确认执行？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/emergency_stop").then(function (r) {
        show("switch-msg", "");
        show("global-msg", "紧急停止已执行：" + r.message + "（点击此提示关闭）", "warn");
        loadStatus();
        if (state.tab === "orders") loadOrders();
      }, function (err) { showError("global-msg", err); loadStatus(); });
    });
  }

  function cancelAll() {
    confirmDialog("全部撤单", "撤销全部未完成委托？（自动交易开关和交易状态不变）").then(function (yes) {
      if (!yes) return;
      post("/api/actions/cancel_all").then(function (r) {
        show("orders-msg", r.message, "ok");
        loadOrders();
        loadStatus();
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
      loadStatus();
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
    QmtOperator.init(loadStatus);
    $("signals-filter").addEventListener("submit", function (ev) { ev.preventDefault(); loadSignals(); });
    $("global-msg").addEventListener("click", function () { show("global-msg", ""); });
    $("cancel-all").addEventListener("click", cancelAll);
    $("chart-form").addEventListener("submit", function (ev) { ev.preventDefault(); loadChart($("chart-code").value); });
    $("chart-mode-k").addEventListener("click", function () { setChartMode("k"); });
    $("chart-mode-m").addEventListener("click", function () { setChartMode("m"); });
    $("orders-form").addEventListener("submit", function (ev) { ev.preventDefault(); loadOrders(); });
    $("trades-form").addEventListener("submit", function (ev) { ev.preventDefault(); loadTrades(); });
    $("trades-csv").addEventListener("click", exportTrades);
    $("buy-form").addEventListener("submit", submitBuy);
    $("buy-form").addEventListener("change", function () { toggleBy($("buy-form"), "buy_by"); });
    $("pool-buy-form").addEventListener("submit", submitPoolBuy);
    $("sell-form").addEventListener("submit", submitSell);
    $("sell-form").addEventListener("change", function () { toggleBy($("sell-form"), "sell_by"); });
    watchCapacity($("buy-form"), "buy", "buy-capacity");
    watchCapacity($("sell-form"), "sell", "sell-capacity");
    $("pool-save").addEventListener("click", savePool);
    $("pool-reload").addEventListener("click", loadPool);
    $("grid-form").addEventListener("submit", startGrid);
    $("grid-form").stock_code.addEventListener("change", proposeGrid);
    QmtConfig.init(loadStatus);
    window.addEventListener("hashchange", activate);
    loadStatus();
    activate();
    openStream();
    loadProtection();
    setInterval(function () {
      loadStatus();
      if (state.tab === "overview") loadHealth(); else loadProtection();  // the banner shows on every page
    }, 5000);
    setInterval(function () {  // the 分时 line and today's bar of a stock that is not held
      if (state.tab === "positions" && state.chartCode && !document.hidden) loadIntraday();
    }, 3000);
  }

  document.addEventListener("DOMContentLoaded", init);
})();
