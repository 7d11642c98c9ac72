/* The 「系统诊断」 tab (GET /api/diagnostics: each check with its level and fix hint); like the other pages of
   issue 19 it builds its own section and adds it with Qmt.addTab. */
(function () {
  "use strict";

  var Q = window.Qmt;

  // ---- the diagnostics page ------------------------------------------------------------------------
  var LEVEL_CLASS = { ok: "ok", warning: "warn", error: "error" };

  function build() {
    var section = Q.make("section");
    var panel = Q.make("div", "panel");
    panel.appendChild(Q.make("h2", null, "系统诊断"));
    var intro = Q.make("p", "muted", "检查运行环境：Python、依赖库、xtquant、miniQMT 连接、磁盘、端口、时钟、配置、数据库与日志。" +
      "命令行中可运行 python main.py --doctor 得到相同结果。");
    panel.appendChild(intro);
    var bar = Q.make("div", "inline");
    var again = Q.make("button", null, "重新诊断");
    again.type = "button";
    again.id = "diagnostics-run";
    again.addEventListener("click", load);
    bar.appendChild(again);
    panel.appendChild(bar);
    var msg = Q.make("div", "msg");
    msg.id = "diagnostics-msg";
    msg.hidden = true;
    panel.appendChild(msg);
    var wrap = Q.make("div", "table-wrap");
    var table = Q.make("table", "table");
    var head = Q.make("thead");
    var row = Q.make("tr");
    ["状态", "检查项", "结果", "处理建议"].forEach(function (t) { row.appendChild(Q.make("th", null, t)); });
    head.appendChild(row);
    table.appendChild(head);
    var body = Q.make("tbody");
    body.id = "diagnostics-body";
    table.appendChild(body);
    wrap.appendChild(table);
    panel.appendChild(wrap);
    section.appendChild(panel);
    return section;
  }

  function load() {
    Q.show("diagnostics-msg", "正在诊断……");
    return Q.get("/api/diagnostics").then(render, function (err) { Q.showError("diagnostics-msg", err); });
  }

  function render(data) {
    var body = Q.$("diagnostics-body");
    Q.clear(body);
    data.checks.forEach(function (c) {
      var row = Q.make("tr");
      row.setAttribute("data-key", c.key);
      row.setAttribute("data-level", c.level);
      Q.cell(row, c.level_label, "level-" + c.level);
      Q.cell(row, c.name);
      Q.cell(row, c.detail).style.whiteSpace = "pre-wrap";
      Q.cell(row, c.level === "ok" ? "" : c.hint).style.whiteSpace = "pre-wrap";
      body.appendChild(row);
    });
    var kind = data.errors ? "error" : (data.warnings ? "warn" : "ok");
    Q.show("diagnostics-msg", "共 " + data.checks.length + " 项检查：" + data.errors + " 项错误，" + data.warnings +
      " 项警告", LEVEL_CLASS[kind === "warn" ? "warning" : kind]);
  }

  Q.addTab("diagnostics", "系统诊断", build());  // the script runs at the end of <body>: #tabs and <main> exist
  Q.registerPage("diagnostics", load);
})();
