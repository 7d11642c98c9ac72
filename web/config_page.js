/* The configuration page: parameters grouped by topic (meaning, range, default, current value, whether
   overridden), inline validation errors from the API, reset to default, change history and rollback.
   Exposes window.QmtConfig.init(onChanged). */
(function () {
  "use strict";

  var Q = window.Qmt;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, digitsOf = Q.digitsOf, fmtPrice = Q.fmtPrice;
  var fmtMoney = Q.fmtMoney, fmtInt = Q.fmtInt, fmtPct = Q.fmtPct, signClass = Q.signClass, fmtTime = Q.fmtTime;
  var jsonText = Q.jsonText, numberField = Q.numberField, show = Q.show, showError = Q.showError;
  var errorText = Q.errorText, headers = Q.headers, ApiError = Q.ApiError, get = Q.get, post = Q.post;
  var confirmDialog = Q.confirmDialog;
  var state = { config: null };
  var afterChange = function () {};

  function loadConfig() {
    return get("/api/config").then(function (c) {
      state.config = c;
      renderConfig(c);
    }, function (err) { showError("config-msg", err); });
  }

  function renderConfig(c) {
    var root = $("config-groups");
    clear(root);
    show("config-warnings", c.warnings.length ? "配置提醒：\n" + c.warnings.join("\n") : "", "warn");
    c.groups.forEach(function (group) {
      var box = make("div", "config-group");
      box.appendChild(make("h3", null, group));
      c.params.filter(function (p) { return p.group === group; }).forEach(function (p) {
        box.appendChild(configRow(p));
      });
      root.appendChild(box);
    });
  }

  function configRow(p) {
    var row = make("div", "config-row");
    row.id = "cfg-" + p.key;
    row.setAttribute("data-key", p.key);
    var about = make("div");
    var key = make("div", "key", p.key);
    if (p.overridden) key.appendChild(make("span", "tag overridden", "已修改"));
    if (p.restart_required) key.appendChild(make("span", "tag restart", "需重启"));
    if (p.run_override) key.appendChild(make("span", "tag cmdline", p.run_override_note));
    about.appendChild(key);
    about.appendChild(make("div", "meaning", p.meaning));
    about.appendChild(make("div", "range", (p.range ? "范围：" + p.range + "；" : "") + "默认：" + jsonText(p.default)));
    row.appendChild(about);

    var field = make("div");
    var input;
    if (p.type === "bool") {
      input = make("input");
      input.type = "checkbox";
      input.checked = !!p.value;
    } else if (p.type === "choice") {
      input = make("select");
      p.choices.forEach(function (choice) {
        var o = make("option", null, String(choice));
        o.value = choice;
        if (choice === p.value) o.selected = true;
        input.appendChild(o);
      });
    } else {
      input = make("input");
      input.type = p.secret ? "password" : "text";
      input.value = p.secret ? "" : jsonText(p.value);
      if (p.secret) input.placeholder = p.value ? "已设置（不显示）" : "未设置";
    }
    input.name = p.key;
    input.className = "cfg-input";
    field.appendChild(input);
    var error = make("div", "field-error");
    error.hidden = true;
    field.appendChild(error);
    row.appendChild(field);

    var actions = make("div", "actions");
    var save = make("button", "small primary", "保存");
    save.type = "button";
    save.addEventListener("click", function () { saveConfig(p, input, error); });
    if (p.run_override) {  // the command line outranks the web for this run: a change could not take effect
      input.disabled = save.disabled = true;
      row.title = p.run_override_note + "（--set），网页修改不会生效；去掉命令行参数后重启才能在此修改";
    }
    actions.appendChild(save);
    if (p.overridden) {
      var reset = make("button", "small", "恢复默认");
      reset.type = "button";
      reset.addEventListener("click", function () { resetConfig(p, error); });
      actions.appendChild(reset);
    }
    row.appendChild(actions);
    return row;
  }

  function readConfigValue(p, input) {
    if (p.type === "bool") return { value: input.checked };
    if (p.type === "choice" || p.type === "str") return { value: input.value };
    if (p.type === "int" || p.type === "float") {
      var v = numberField(input.value);
      return v === undefined ? { error: "请输入数值" } : { value: v };
    }
    try {
      return { value: JSON.parse(input.value) };
    } catch (e) {
      return { error: "格式应为 JSON，例如 " + jsonText(p.default) };
    }
  }

  function fieldError(input, error, text) {
    error.textContent = text || "";
    error.hidden = !text;
    input.classList.toggle("invalid", !!text);
  }

  function saveConfig(p, input, error) {
    var read = readConfigValue(p, input);
    if (read.error) { fieldError(input, error, read.error); return; }
    var risky = p.key === "ENABLE_SIMULATION_MODE" && read.value === false;
    var change = p.key + "：" + (p.secret ? "（保密值）" : jsonText(p.value) + " → " + jsonText(read.value));
    var ask = risky ? confirmDialog("切换到实盘", change + "\n关闭模拟模式后，重启时将通过 miniQMT 连接真实账户交易。确认保存？")
      : confirmDialog("保存参数", change + (p.restart_required ? "（重启后生效）" : "") + "。确认保存？");
    ask.then(function (yes) {
      if (!yes) { if (p.type === "bool") input.checked = !!p.value; return; }
      var changes = {}; changes[p.key] = read.value;
      post("/api/config/update", { changes: changes }).then(function (r) {
        fieldError(input, error, "");
        var text = p.key + " 已保存" + (r.restart_required.length ? "（重启后生效）" : "");
        if (r.warnings.length) text += "\n提醒：" + r.warnings.join("；");
        show("config-msg", text, r.warnings.length ? "warn" : "ok");
        loadConfig().then(function () { loadConfigHistory(); afterChange(); });
      }, function (err) {
        var own = err.errors && err.errors[p.key];
        fieldError(input, error, own || errorText(err));
      });
    });
  }

  function resetConfig(p, error) {
    confirmDialog("恢复默认", "将 " + p.key + " 恢复为 config.py 中的默认值 " + jsonText(p.default) + "？").then(function (yes) {
      if (!yes) return;
      post("/api/config/reset", { key: p.key }).then(function () {
        show("config-msg", p.key + " 已恢复默认值", "ok");
        loadConfig().then(function () { loadConfigHistory(); afterChange(); });
      }, function (err) { error.textContent = errorText(err); error.hidden = false; });
    });
  }

  function loadConfigHistory() {
    get("/api/config/history?limit=100").then(function (list) {
      var body = $("config-history-body");
      clear(body);
      list.forEach(function (h) {
        var tr = make("tr");
        tr.setAttribute("data-history", h.id);
        cell(tr, "#" + h.id);
        cell(tr, fmtTime(h.time));
        cell(tr, h.key);
        cell(tr, jsonText(h.old_value));
        cell(tr, jsonText(h.new_value));
        cell(tr, SOURCE_LABELS[h.source] || h.source);
        var actions = cell(tr, "");
        var b = make("button", "small", "回滚");
        b.type = "button";
        b.title = "恢复为这次修改之前的值 " + jsonText(h.old_value);
        b.addEventListener("click", function () { rollback(h.id, h.key + " 恢复为 " + jsonText(h.old_value)); });
        actions.appendChild(b);
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有修改记录", "muted").colSpan = 7; body.appendChild(tr); }
    }, function (err) { showError("history-msg", err); });
  }
  var SOURCE_LABELS = { web: "网页", rollback: "回滚", emergency_stop: "紧急停止" };

  function rollback(historyId, text) {
    confirmDialog("回滚参数", historyId ? "回滚修改 #" + historyId + "：" + text + "？" : "撤销最近一次参数修改？")
      .then(function (yes) {
        if (!yes) return;
        post("/api/config/rollback", historyId ? { history_id: historyId } : {}).then(function (r) {
          var parts = Object.keys(r.restored).map(function (k) { return k + " = " + jsonText(r.restored[k]); });
          show("history-msg", "已回滚：" + parts.join("，"), "ok");
          loadConfig().then(function () { loadConfigHistory(); afterChange(); });
        }, function (err) { showError("history-msg", err); });
      });
  }

  function init(onChanged) {
    afterChange = onChanged;
    $("config-rollback-latest").addEventListener("click", function () { rollback(null, ""); });
  }

  window.QmtConfig = { init: init, load: function () { loadConfig(); loadConfigHistory(); } };
})();
