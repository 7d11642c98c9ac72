/* The overview's 「申购与逆回购」 panel (issue 28 §3, GET /api/chores): today's new share / new bond subscriptions
   with their orders' state, allotments (中签) with the payment due, and the overnight reverse repo. A simulated
   account is told plainly that these chores run only on a live account. */
(function () {
  "use strict";

  var Q = window.Qmt;
  var REFRESH_MS = 60000;

  function build() {
    var panel = Q.make("div", "panel");
    panel.id = "chores-panel";
    panel.appendChild(Q.make("h2", null, "申购与逆回购（闲置资金）"));
    var note = Q.make("div", "msg");
    note.id = "chores-note";
    note.hidden = true;
    panel.appendChild(note);
    var state = Q.make("p", "muted");
    state.id = "chores-state";
    panel.appendChild(state);
    var wrap = Q.make("div", "table-wrap");
    var table = Q.make("table", "table compact");
    var head = Q.make("tr");
    ["类型", "代码", "名称", "数量", "价格 / 年化利率", "金额（元）", "状态", "说明"].forEach(function (t) {
      head.appendChild(Q.make("th", null, t));
    });
    var thead = Q.make("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = Q.make("tbody");
    body.id = "chores-body";
    table.appendChild(body);
    wrap.appendChild(table);
    panel.appendChild(wrap);
    var due = Q.make("p");
    due.id = "chores-due";
    panel.appendChild(due);
    return panel;
  }

  function status(row) {
    if (row.kind === "allotment") return "中签，" + row.due_day + " 16:00 前缴款";
    if (row.status === "sent") return row.status_label + (row.order_status_label ? "（" + row.order_status_label + "）" : "");
    return row.status_label;
  }

  function render(data) {
    var note = Q.$("chores-note");
    note.hidden = !data.note;
    note.textContent = data.note || "";
    note.className = "msg" + (data.live ? "" : " warn");
    Q.$("chores-state").textContent = data.available ? "新股新债申购：" + (data.ipo_enabled ? "已开启" : "未开启") +
      "（每个交易日 " + data.ipo_time + "，参数 ENABLE_IPO_SUBSCRIBE）；国债逆回购：" +
      (data.repo_enabled ? "已开启" : "未开启") + "（" + data.repo_time + "，参数 ENABLE_REPO）" : "";
    var body = Q.$("chores-body");
    Q.clear(body);
    var rows = [].concat(data.subscriptions || [], data.allotments || [], data.repo || []);
    rows.forEach(function (r) {
      var tr = Q.make("tr");
      tr.setAttribute("data-kind", r.kind);
      tr.setAttribute("data-status", r.status);
      Q.cell(tr, r.kind_label);
      Q.cell(tr, r.code);
      Q.cell(tr, r.name);
      Q.cell(tr, Q.fmtInt(r.volume) + (r.kind === "repo" ? " 张" : ""));
      Q.cell(tr, r.kind === "repo" ? r.price + "%" : String(r.price));
      Q.cell(tr, Q.fmtMoney(r.amount));
      Q.cell(tr, status(r));
      Q.cell(tr, r.reason || "");
      body.appendChild(tr);
    });
    if (!rows.length) {
      var empty = Q.make("tr");
      var td = Q.cell(empty, "今日没有申购、中签或逆回购记录");
      td.colSpan = 8;
      td.className = "muted";
      body.appendChild(empty);
    }
    Q.$("chores-due").textContent = data.payments_due > 0 ?
      "中签待缴款合计 " + Q.fmtMoney(data.payments_due) + " 元：缴款日 16:00 前请保持可用资金足额，逆回购不会动用这部分资金" : "";
  }

  function load() {
    if (!Q.$("chores-panel")) return;
    Q.get("/api/chores").then(render, function (err) { Q.showError("chores-note", err); });
  }

  function onOverview() { return (location.hash || "#overview") === "#overview"; }

  var section = Q.$("tab-overview");
  if (section) {
    section.appendChild(build());
    load();
    window.addEventListener("hashchange", function () { if (onOverview()) load(); });
    setInterval(function () { if (onOverview() && !document.hidden) load(); }, REFRESH_MS);
  }
})();
