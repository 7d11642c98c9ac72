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

  /* Each group folds (a <details>); the index above jumps to a group and opens it. On a narrow screen the
     groups start folded except the first, on a wide one all start open. Re-rendering keeps what was open. */
  function renderConfig(c) {
    var root = $("config-groups"), index = $("config-index");
    var wasOpen = {};
    Array.prototype.forEach.call(root.querySelectorAll("details"), function (d) { wasOpen[d.id] = d.open; });
    var narrow = window.matchMedia("(max-width: 700px)").matches;
    clear(root);
    clear(index);
    show("config-warnings", c.warnings.length ? "配置提醒：\n" + c.warnings.join("\n") : "", "warn");
    c.groups.forEach(function (group, i) {
      var box = make("details", "config-group");
      box.id = "cfg-group-" + i;
      box.open = wasOpen[box.id] !== undefined ? wasOpen[box.id] : (!narrow || i === 0);
      var mine = c.params.filter(function (p) { return p.group === group; });
      var changed = mine.filter(function (p) { return p.overridden; }).length;
      box.appendChild(make("summary", null, group + "（" + mine.length + " 项" + (changed ? "，" + changed + " 项已修改" : "") + "）"));
      mine.forEach(function (p) { box.appendChild(configRow(p)); });
      root.appendChild(box);
      var jump = make("a", "chip", group);
      jump.href = "#config";
      jump.addEventListener("click", function (ev) {
        ev.preventDefault();
        box.open = true;
        box.scrollIntoView({ behavior: "smooth", block: "start" });
      });
      index.appendChild(jump);
    });
  }

  function configRow(p) {
    var row = make("div", "config-row");
    row.id = "cfg-" + p.key;
    row.setAttribute("data-key", p.key);
    var about = make("div", "about");
    var title = make("div", "meaning", p.meaning);
    if (p.overridden) title.appendChild(make("span", "tag overridden", "已修改"));
    if (p.restart_required) title.appendChild(make("span", "tag restart", "需重启"));
    if (p.run_override) title.appendChild(make("span", "tag cmdline", p.run_override_note));
    about.appendChild(title);
    about.appendChild(make("div", "key", p.key));
    var range = isRatio(p) && p.min != null && p.max != null ? percentText(p.min) + " ~ " + percentText(p.max) : p.range;
    about.appendChild(make("div", "range", (range ? "范围：" + range + "；" : "") + "默认：" + shownValue(p, p.default)));
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
    if (isRatio(p)) {  // the stored value stays a fraction; the person reads it as a percentage
      var hint = make("span", "pct-hint");
      var showPct = function () {
        var v = numberField(input.value);
        hint.textContent = typeof v === "number" ? "＝ " + percentText(v) : "";
      };
      input.addEventListener("input", showPct);
      showPct();
      field.appendChild(hint);
    }
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

  /* A ratio parameter (the metadata's float named *_RATIO / *_PCT): a fraction shown as a percentage. */
  function isRatio(p) { return !!p && p.type === "float" && /_(RATIO|PCT)(_|$)/.test(p.key); }
  function percentText(v) { return parseFloat((v * 100).toPrecision(10)) + "%"; }

  /* A value as a person reads it: 开/关 for switches, −9.5% for ratios, 1,000,000 for big numbers, JSON for
     tables. */
  function shownValue(p, v) {
    if (!p) return jsonText(v);
    if (p.type === "bool") return v ? "开" : "关";
    if (isRatio(p) && typeof v === "number") return percentText(v);
    if ((p.type === "int" || p.type === "float") && typeof v === "number" && Math.abs(v) >= 1000) {
      return v.toLocaleString("zh-CN", { maximumFractionDigits: 6 });
    }
    return jsonText(v);
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
    var change = p.meaning.split(/[：（(]/)[0] + "（" + p.key + "）：" +
      (p.secret ? "（保密值）" : exactShown(p, p.value) + " → " + exactShown(p, read.value));
    var ask = risky ? confirmDialog("切换到实盘", change + "\n关闭模拟模式后，重启时将通过 miniQMT 连接真实账户交易。确认保存？")
      : confirmDialog("保存参数", change + (p.restart_required ? "（重启后生效）" : "") + "。确认保存？");
    ask.then(function (yes) {
      if (!yes) { if (p.type === "bool") input.checked = !!p.value; return; }
      var changes = {}; changes[p.key] = read.value;
      post("/api/config/update", { changes: changes }).then(function (r) {
        fieldError(input, error, "");
        var text = "「" + p.meaning + "」已保存" + (r.restart_required.length ? "（重启后生效）" : "");
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
    confirmDialog("恢复默认", "将「" + p.meaning + "」（" + p.key + "）恢复为 config.py 中的值 " + shownValue(p, p.default) + "？").then(function (yes) {
      if (!yes) return;
      post("/api/config/reset", { key: p.key }).then(function () {
        show("config-msg", "「" + p.meaning + "」已恢复为 config.py 中的值", "ok");
        loadConfig().then(function () { loadConfigHistory(); afterChange(); });
      }, function (err) { error.textContent = errorText(err); error.hidden = false; });
    });
  }

  /* A ratio also with its stored fraction, so the confirmation shows exactly what is saved. */
  function exactShown(p, v) {
    return isRatio(p) && typeof v === "number" ? percentText(v) + "（" + jsonText(v) + "）" : shownValue(p, v);
  }

  function paramOf(key) {
    return state.config && state.config.params.filter(function (x) { return x.key === key; })[0];
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
        var name = cell(tr, "");
        name.appendChild(make("div", null, shortMeaning(h.key)));
        if (shortMeaning(h.key) !== h.key) name.appendChild(make("div", "key-small", h.key));
        var p = paramOf(h.key);
        cell(tr, shownValue(p, h.old_value));
        cell(tr, shownValue(p, h.new_value));
        cell(tr, SOURCE_LABELS[h.source] || h.source);
        var actions = cell(tr, "");
        var b = make("button", "small", "回滚");
        b.type = "button";
        b.title = "恢复为这次修改之前的值 " + shownValue(p, h.old_value);
        b.addEventListener("click", function () { rollback(h.id, h.key + " 恢复为 " + shownValue(p, h.old_value)); });
        actions.appendChild(b);
        body.appendChild(tr);
      });
      if (!list.length) { var tr = make("tr"); cell(tr, "没有修改记录", "muted").colSpan = 7; body.appendChild(tr); }
    }, function (err) { showError("history-msg", err); });
  }
  /* "止损比例：价格 ≤ …" → "止损比例": the meaning up to its first explanation, for narrow places. */
  function shortMeaning(key) {
    var p = state.config && state.config.params.filter(function (x) { return x.key === key; })[0];
    return p ? p.meaning.split(/[：（(]/)[0] : key;
  }
  var SOURCE_LABELS = { web: "网页", rollback: "回滚", emergency_stop: "紧急停止" };

  function rollback(historyId, text) {
    confirmDialog("回滚参数", historyId ? "回滚修改 #" + historyId + "：" + text + "？" : "撤销最近一次参数修改？")
      .then(function (yes) {
        if (!yes) return;
        post("/api/config/rollback", historyId ? { history_id: historyId } : {}).then(function (r) {
          var parts = Object.keys(r.restored).map(function (k) { return k + " = " + shownValue(paramOf(k), r.restored[k]); });
          show("history-msg", "已回滚：" + parts.join("，"), "ok");
          loadConfig().then(function () { loadConfigHistory(); afterChange(); });
        }, function (err) { showError("history-msg", err); });
      });
  }

  function init(onChanged) {
    afterChange = onChanged;
    $("config-rollback-latest").addEventListener("click", function () { rollback(null, ""); });
  }

  Q.registerPage("config", function () { loadConfig().then(loadConfigHistory); });
  window.QmtConfig = { init: init };
})();
