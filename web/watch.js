/* The 「盯盘」 page (issue 17): create, edit, pause and delete watch tasks, see each one's state and last alerts;
   per-stock rule parameters, lock and blacklist; a position's rule state by hand. Watch alerts arriving on the
   live stream (app.js dispatches "qmt:bus") show as toasts, and as browser notifications when allowed.
   Exposes window.QmtWatch. */
(function () {
  "use strict";
  var Q = window.Qmt;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear;

  var CONDITIONS = [
    ["price_above", "价格 ≥", "value"], ["price_below", "价格 ≤", "value"],
    ["change_above", "涨幅 ≥ (%)", "value"], ["change_below", "涨幅 ≤ (%)", "value"],
    ["near_limit_up", "距涨停 ≤ (%)", "value"], ["near_limit_down", "距跌停 ≤ (%)", "value"],
    ["new_high", "创 N 日新高", "days"], ["new_low", "创 N 日新低", "days"],
    ["macd_golden", "日线 MACD 金叉", ""], ["macd_dead", "日线 MACD 死叉", ""],
    ["volume_ratio_above", "量比 ≥", "value"], ["in_zone", "价格进入区间", "zone"]
  ];
  var PARAM_LABELS = {
    STOP_LOSS_RATIO: "止损比例", INITIAL_TAKE_PROFIT_RATIO: "首次止盈比例",
    INITIAL_TAKE_PROFIT_RATIO_PERCENTAGE: "首次止盈卖出比例", DYNAMIC_TAKE_PROFIT: "动态止盈表",
    BUY_GRID_LEVELS: "补仓档位", POSITION_UNIT: "单次买入金额", MAX_POSITION_VALUE: "单股最大持仓",
    GRID_STEP_RATIO: "网格间距", GRID_BUY_AMOUNT: "网格每格金额", GRID_CALLBACK_RATIO: "网格回调比例",
    GRID_MAX_INVESTMENT: "网格最大投入", GRID_TAKE_PROFIT_RATIO: "网格止盈", GRID_STOP_LOSS_RATIO: "网格止损",
    GRID_MAX_HOLD_DAYS: "网格最长天数"
  };
  var editing = null;  // id of the task being edited, or null when the form creates one
  var built = false;

  // ---- layout (built once, inside #watch-root) --------------------------------------------------
  function build() {
    if (built) return;
    built = true;
    var root = $("watch-root");
    root.innerHTML =
      '<div class="panel"><h2 id="watch-form-title">新建盯盘任务</h2>' +
      '<div id="watch-msg" class="msg" hidden></div>' +
      '<form id="watch-form">' +
      '<div class="inline"><label>股票代码 <input name="stock_code" size="12" placeholder="如 600036"></label>' +
      '<button type="button" id="watch-add-cond">添加条件</button></div>' +
      '<div id="watch-conds"></div>' +
      '<div class="inline"><label><input type="checkbox" name="sessions_only" checked> 仅交易时段</label>' +
      '<label>重复提醒冷却（秒，0=只提醒一次） <input name="repeat_cooldown" size="6" value="0"></label>' +
      '<label>到期日 <input name="expires" type="date"></label></div>' +
      '<div class="inline"><label>触发后 <select name="action_type"><option value="notify">仅提醒</option>' +
      '<option value="buy">生成买入信号</option><option value="sell">生成卖出信号</option></select></label>' +
      '<label class="watch-buy">买入金额（元） <input name="amount" size="8"></label>' +
      '<label class="watch-sell">卖出股数 <input name="volume" size="8"></label>' +
      '<label class="watch-sell">或卖出比例（0-1） <input name="ratio" size="5"></label>' +
      '<label class="watch-buy">开仓后止损比例（可空） <input name="stop_loss_ratio" size="6" placeholder="如 -0.05"></label>' +
      '<label class="watch-buy">首次止盈比例（可空） <input name="take_profit_ratio" size="6"></label></div>' +
      '<div class="inline"><button type="submit" class="primary" id="watch-submit">保存任务</button>' +
      '<button type="button" id="watch-cancel-edit" hidden>取消编辑</button>' +
      '<button type="button" id="watch-notify">允许浏览器通知</button></div>' +
      '<p class="muted">买卖信号进入与规则信号相同的队列：自动交易关闭或交易暂停时等待人工执行，所有 A 股检查照常生效。</p>' +
      '</form></div>' +
      '<div class="panel"><h2>盯盘任务</h2><div class="table-wrap"><table class="table"><thead><tr>' +
      '<th>编号</th><th>代码</th><th>条件</th><th>动作</th><th>状态</th><th class="num">已触发</th>' +
      '<th>最近触发</th><th>最近提醒</th><th>操作</th></tr></thead><tbody id="watch-body"></tbody></table></div></div>' +
      '<div class="panel"><h2>提醒记录</h2><div class="table-wrap"><table class="table"><thead><tr>' +
      '<th>时间</th><th>任务</th><th>代码</th><th class="num">价格</th><th>内容</th></tr></thead>' +
      '<tbody id="watch-alerts-body"></tbody></table></div></div>' +
      '<div class="panel"><h2>个股参数与持仓状态</h2><div id="stock-msg" class="msg" hidden></div>' +
      '<form id="stock-form" class="inline"><label>股票代码 <input name="code" size="12"></label>' +
      '<button type="submit">查看</button></form><div id="stock-detail"></div></div>';
    addConditionRow();
    $("watch-add-cond").addEventListener("click", function () { addConditionRow(); });
    $("watch-form").addEventListener("submit", submitTask);
    $("watch-form").addEventListener("change", toggleAction);
    $("watch-cancel-edit").addEventListener("click", resetForm);
    $("watch-notify").addEventListener("click", askNotifications);
    $("stock-form").addEventListener("submit", function (ev) { ev.preventDefault(); loadStock($("stock-form").code.value); });
    toggleAction();
  }

  function addConditionRow(cond) {
    var row = make("div", "inline watch-cond");
    var select = make("select");
    select.name = "type";
    CONDITIONS.forEach(function (c) { var o = make("option", null, c[1]); o.value = c[0]; select.appendChild(o); });
    row.appendChild(select);
    ["value", "low", "high", "days"].forEach(function (name) {
      var label = make("label", "cond-" + name, { value: "数值", low: "下限", high: "上限", days: "N 日" }[name] + " ");
      var input = make("input");
      input.name = name;
      input.size = 7;
      label.appendChild(input);
      row.appendChild(label);
    });
    var remove = make("button", null, "删除条件");
    remove.type = "button";
    remove.addEventListener("click", function () { if ($("watch-conds").children.length > 1) row.remove(); });
    row.appendChild(remove);
    select.addEventListener("change", function () { toggleCondition(row); });
    $("watch-conds").appendChild(row);
    if (cond) {
      select.value = cond.type;
      ["value", "low", "high", "days"].forEach(function (k) { if (cond[k] != null) row.querySelector('[name="' + k + '"]').value = cond[k]; });
    }
    toggleCondition(row);
  }

  function toggleCondition(row) {
    var type = row.querySelector("select").value;
    var kind = CONDITIONS.filter(function (c) { return c[0] === type; })[0][2];
    row.querySelector(".cond-value").hidden = kind !== "value";
    row.querySelector(".cond-days").hidden = kind !== "days";
    row.querySelector(".cond-low").hidden = kind !== "zone";
    row.querySelector(".cond-high").hidden = kind !== "zone";
  }

  function toggleAction() {
    var type = $("watch-form").action_type.value;
    Array.prototype.forEach.call(document.querySelectorAll("#watch-form .watch-buy"), function (n) { n.hidden = type !== "buy"; });
    Array.prototype.forEach.call(document.querySelectorAll("#watch-form .watch-sell"), function (n) { n.hidden = type !== "sell"; });
  }

  // ---- the task form ----------------------------------------------------------------------------
  function formBody() {
    var f = $("watch-form");
    var conditions = Array.prototype.map.call(document.querySelectorAll("#watch-conds .watch-cond"), function (row) {
      var type = row.querySelector("select").value;
      var kind = CONDITIONS.filter(function (c) { return c[0] === type; })[0][2];
      var cond = { type: type };
      if (kind === "value") cond.value = Q.numberField(row.querySelector('[name="value"]').value);
      if (kind === "days") cond.days = Q.numberField(row.querySelector('[name="days"]').value);
      if (kind === "zone") {
        cond.low = Q.numberField(row.querySelector('[name="low"]').value);
        cond.high = Q.numberField(row.querySelector('[name="high"]').value);
      }
      return cond;
    });
    var action = { type: f.action_type.value };
    if (action.type === "buy") action.amount = Q.numberField(f.amount.value);
    if (action.type === "sell") {
      if (f.volume.value.trim()) action.volume = Q.numberField(f.volume.value);
      else action.ratio = Q.numberField(f.ratio.value);
    }
    var body = { stock_code: f.stock_code.value.trim(), conditions: conditions, sessions_only: f.sessions_only.checked,
                 repeat_cooldown: Q.numberField(f.repeat_cooldown.value) || 0, expires: f.expires.value || null,
                 action: action };
    if (action.type === "buy") {
      var exits = {};
      if (f.stop_loss_ratio.value.trim()) exits.stop_loss_ratio = Q.numberField(f.stop_loss_ratio.value);
      if (f.take_profit_ratio.value.trim()) exits.take_profit_ratio = Q.numberField(f.take_profit_ratio.value);
      if (Object.keys(exits).length) body.exits = exits;
    }
    return body;
  }

  function submitTask(ev) {
    ev.preventDefault();
    var request = editing == null ? Q.post("/api/watch/tasks", formBody())
      : Q.api("PUT", "/api/watch/tasks/" + editing, formBody());
    request.then(function (task) {
      Q.show("watch-msg", (editing == null ? "已创建" : "已修改") + "盯盘任务 #" + task.id + "：" + task.description, "ok");
      resetForm(true);
      load();
    }, function (err) { Q.showError("watch-msg", err); });
  }

  function resetForm(keepMessage) {
    editing = null;
    $("watch-form").reset();
    clear($("watch-conds"));
    addConditionRow();
    toggleAction();
    $("watch-form-title").textContent = "新建盯盘任务";
    $("watch-cancel-edit").hidden = true;
    if (keepMessage !== true) Q.show("watch-msg", "");
  }

  function editTask(task) {
    editing = task.id;
    var f = $("watch-form");
    f.stock_code.value = task.stock_code;
    clear($("watch-conds"));
    task.conditions.forEach(addConditionRow);
    f.sessions_only.checked = task.sessions_only;
    f.repeat_cooldown.value = task.repeat_cooldown;
    f.expires.value = task.expires || "";
    f.action_type.value = task.action.type;
    f.amount.value = task.action.amount || "";
    f.volume.value = task.action.volume || "";
    f.ratio.value = task.action.ratio || "";
    f.stop_loss_ratio.value = task.exits && task.exits.stop_loss_ratio != null ? task.exits.stop_loss_ratio : "";
    f.take_profit_ratio.value = task.exits && task.exits.take_profit_ratio != null ? task.exits.take_profit_ratio : "";
    toggleAction();
    $("watch-form-title").textContent = "编辑盯盘任务 #" + task.id;
    $("watch-cancel-edit").hidden = false;
    f.scrollIntoView();
  }

  // ---- tables -----------------------------------------------------------------------------------
  function load() {
    build();
    Q.get("/api/watch/tasks").then(renderTasks, function (err) { Q.showError("watch-msg", err); });
    Q.get("/api/watch/alerts?limit=50").then(renderAlerts, function (err) { Q.showError("watch-msg", err); });
  }

  function renderTasks(data) {
    var body = $("watch-body");
    clear(body);
    data.tasks.forEach(function (t) {
      var tr = make("tr");
      tr.setAttribute("data-task", t.id);
      cell(tr, "#" + t.id);
      cell(tr, t.stock_code);
      cell(tr, t.description);
      var action = t.action_label + (t.action.amount ? " " + t.action.amount + " 元" : "") +
        (t.action.volume ? " " + t.action.volume + " 股" : "") + (t.action.ratio ? " " + t.action.ratio * 100 + "%" : "");
      cell(tr, action);
      cell(tr, t.status_label, "task-status status-" + t.status);
      cell(tr, String(t.fired_count), "num");
      cell(tr, Q.fmtTime(t.last_fired_at));
      cell(tr, t.last_alerts.map(function (a) { return Q.fmtTime(a.time) + " " + a.price; }).join("；") || "--");
      var ops = cell(tr, "");
      if (t.status === "active") ops.appendChild(button("暂停", function () { act(t, "stop"); }));
      if (t.status === "stopped") ops.appendChild(button("启用", function () { act(t, "start"); }));
      ops.appendChild(button("编辑", function () { editTask(t); }));
      ops.appendChild(button("删除", function () { removeTask(t); }));
      body.appendChild(tr);
    });
    if (!data.tasks.length) { var tr = make("tr"); cell(tr, "暂无盯盘任务").colSpan = 9; body.appendChild(tr); }
  }

  function renderAlerts(data) {
    var body = $("watch-alerts-body");
    clear(body);
    data.alerts.forEach(function (a) {
      var tr = make("tr");
      cell(tr, Q.fmtTime(a.time));
      cell(tr, "#" + a.task_id);
      cell(tr, a.stock_code);
      cell(tr, Q.fmtPrice(a.price, a.stock_code), "num");
      cell(tr, a.message);
      body.appendChild(tr);
    });
  }

  function button(text, onClick) {
    var b = make("button", null, text);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function act(task, verb) {
    Q.post("/api/watch/tasks/" + task.id + "/" + verb).then(load, function (err) { Q.showError("watch-msg", err); });
  }

  function removeTask(task) {
    Q.confirmDialog("删除盯盘任务", "确认删除任务 #" + task.id + "（" + task.description + "）？").then(function (yes) {
      if (!yes) return;
      Q.api("DELETE", "/api/watch/tasks/" + task.id).then(load, function (err) { Q.showError("watch-msg", err); });
    });
  }

  // ---- per-stock parameters and the position's rule state ---------------------------------------
  function loadStock(code) {
    code = (code || "").trim();
    if (!code) return;
    Q.get("/api/stock-params/" + encodeURIComponent(code)).then(function (view) {
      Q.show("stock-msg", "");
      renderStock(view);
    }, function (err) { Q.showError("stock-msg", err); });
  }

  function renderStock(view) {
    var root = $("stock-detail");
    clear(root);
    var flags = make("div", "inline");
    var lock = checkbox("锁定（不自动交易）", view.locked);
    var black = checkbox("MACD/股票池买入黑名单", view.blacklisted);
    flags.appendChild(lock.label);
    flags.appendChild(black.label);
    root.appendChild(flags);
    var table = make("table", "table");
    var head = make("tr");
    ["参数", "个股值", "全局值", "范围"].forEach(function (t) { head.appendChild(make("th", null, t)); });
    table.appendChild(head);
    var inputs = {};
    Object.keys(view.effective).forEach(function (key) {
      var e = view.effective[key];
      var tr = make("tr");
      cell(tr, (PARAM_LABELS[key] || key) + "（" + key + "）");
      var input = make("input");
      input.size = 22;
      input.value = e.overridden ? Q.jsonText(e.value) : "";
      input.placeholder = "沿用全局";
      inputs[key] = input;
      cell(tr, "").appendChild(input);
      cell(tr, Q.jsonText(e.global));
      cell(tr, e.range);
      table.appendChild(tr);
    });
    root.appendChild(table);
    var save = button("保存个股参数", function () {
      var params = {};
      Object.keys(inputs).forEach(function (key) {
        var text = inputs[key].value.trim();
        var was = view.effective[key].overridden;
        if (!text) { if (was) params[key] = null; return; }
        try { params[key] = JSON.parse(text); } catch (e) { params[key] = text; }
      });
      var body = { locked: lock.input.checked, blacklisted: black.input.checked };
      if (Object.keys(params).length) body.params = params;
      Q.api("PUT", "/api/stock-params/" + view.stock_code, body).then(function (v) {
        Q.show("stock-msg", view.stock_code + " 个股参数已保存", "ok");
        renderStock(v);
      }, function (err) { Q.showError("stock-msg", err); });
    });
    var reset = button("恢复全局参数", function () {
      Q.api("DELETE", "/api/stock-params/" + view.stock_code).then(renderStock, function (err) { Q.showError("stock-msg", err); });
    });
    var ops = make("div", "inline");
    ops.appendChild(save);
    ops.appendChild(reset);
    root.appendChild(ops);
    Q.get("/api/positions/" + view.stock_code + "/state").then(function (s) { renderState(root, s); }, function () {});
  }

  function renderState(root, s) {
    var box = make("div", "panel position-state");
    var review = s.review;
    box.appendChild(make("h3", null, "持仓规则状态" + (review && review.pending ? "（待确认）" : "")));
    if (review) box.appendChild(make("p", "muted", "最高价来源：" + review.highest_source_label));
    var fields = [["highest_price", "最高价"], ["base_cost_price", "基准成本价"], ["open_date", "开仓日期"],
                  ["used_add_levels", "已用补仓档位（序号列表）"]];
    var inputs = {};
    var form = make("div", "inline");
    fields.forEach(function (f) {
      var label = make("label", null, f[1] + " ");
      var input = make("input");
      input.size = 10;
      input.value = Q.jsonText(s[f[0]]);
      inputs[f[0]] = input;
      label.appendChild(input);
      form.appendChild(label);
    });
    var triggered = checkbox("已首次止盈", s.profit_triggered);
    form.appendChild(triggered.label);
    box.appendChild(form);
    box.appendChild(button(review && review.pending ? "保存并确认" : "保存持仓状态", function () {
      var body = {};
      if (inputs.highest_price.value !== Q.jsonText(s.highest_price)) body.highest_price = Q.numberField(inputs.highest_price.value);
      if (inputs.base_cost_price.value !== Q.jsonText(s.base_cost_price)) body.base_cost_price = Q.numberField(inputs.base_cost_price.value);
      if (inputs.open_date.value !== Q.jsonText(s.open_date)) body.open_date = inputs.open_date.value;
      if (inputs.used_add_levels.value !== Q.jsonText(s.used_add_levels)) {
        try { body.used_add_levels = JSON.parse(inputs.used_add_levels.value); } catch (e) { body.used_add_levels = inputs.used_add_levels.value; }
      }
      if (triggered.input.checked !== s.profit_triggered) body.profit_triggered = triggered.input.checked;
      if (review && review.pending) body.confirm = true;
      Q.api("PUT", "/api/positions/" + s.stock_code + "/state", body).then(function () {
        Q.show("stock-msg", s.stock_code + " 持仓状态已保存（已记入修改历史）", "ok");
        loadStock(s.stock_code);
      }, function (err) { Q.showError("stock-msg", err); });
    }));
    root.appendChild(box);
  }

  function checkbox(text, checked) {
    var label = make("label", null);
    var input = make("input");
    input.type = "checkbox";
    input.checked = !!checked;
    label.appendChild(input);
    label.appendChild(document.createTextNode(" " + text));
    return { label: label, input: input };
  }

  // ---- alerts: toasts and browser notifications -------------------------------------------------
  function askNotifications() {
    if (!("Notification" in window)) { Q.show("watch-msg", "此浏览器不支持系统通知", "warn"); return; }
    Notification.requestPermission().then(function (p) {
      Q.show("watch-msg", p === "granted" ? "已允许浏览器通知" : "浏览器通知未被允许，提醒只在页面内显示", p === "granted" ? "ok" : "warn");
    });
  }

  function toast(text) {
    var box = $("toasts");
    if (!box) {
      box = make("div", "toasts");
      box.id = "toasts";
      box.setAttribute("aria-live", "polite");
      document.body.appendChild(box);
    }
    var item = make("div", "toast", text);
    item.setAttribute("role", "status");
    item.addEventListener("click", function () { item.remove(); });
    box.appendChild(item);
    setTimeout(function () { item.remove(); }, 15000);
  }

  function onBusEvent(ev) {
    var event = ev.detail || {};
    if (event.kind !== "watch_alert") return;
    toast(event.message);
    if ("Notification" in window && Notification.permission === "granted") {
      try { new Notification("盯盘提醒", { body: event.message }); } catch (e) { /* some browsers need a service worker */ }
    }
    if (location.hash === "#watch") load();
  }

  document.addEventListener("qmt:bus", onBusEvent);
  /* From the positions view: open this stock's parameters and rule state (the page's 个股参数 section). */
  function editStock(code) {
    location.hash = "#watch";
    build();
    $("stock-form").elements.code.value = code;
    loadStock(code);
    $("stock-form").scrollIntoView();
  }

  Q.registerPage("watch", load);
  window.QmtWatch = { toast: toast, editStock: editStock };
})();
