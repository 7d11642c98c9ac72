/* The header's status and the overview tab: mode and data-source badges, the demo / trading-state / calendar
   banners, the clock, the account figures, the switches, thread health, the broker and data connection, and the
   red 「保护失效」 banner.
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp, state = A.state;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, fmtMoney = Q.fmtMoney, signClass = Q.signClass;
  var fmtTime = Q.fmtTime, show = Q.show, showError = Q.showError, get = Q.get, post = Q.post;
  var confirmDialog = Q.confirmDialog;

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

  A.loadStatus = loadStatus; A.renderClock = renderClock; A.renderAccount = renderAccount;
  A.loadProtection = loadProtection; A.loadHealth = loadHealth;
})();
