/* The 「委托文件」 tab: upload a CSV order file (executed line by line, or only validated), and the processed
   files with each line's status, order id and reason (GET/POST /api/order-files). Loaded after diagnostics.js. */
(function () {
  "use strict";

  var Q = window.Qmt;
  var STATUS = { ok: "已委托", valid: "校验通过", failed: "失败" };
  var SIDE = { buy: "买入", sell: "卖出" };

  function build() {
    var section = Q.make("section");
    var panel = Q.make("div", "panel");
    panel.appendChild(Q.make("h2", null, "委托文件"));
    panel.appendChild(Q.make("p", "muted", "CSV 每行一条指令：证券代码、方向（买/卖）、数量/金额/比例 三选一、价格（可空）、备注（可空）。" +
      "也可把文件放入委托文件目录（参数 ORDER_FILE_DIR），处理后移入 done/ 或 error/ 并附结果文件。"));
    var form = Q.make("form", "inline");
    form.id = "order-file-form";
    var file = Q.make("input");
    file.type = "file";
    file.name = "file";
    file.accept = ".csv,text/csv";
    file.id = "order-file-input";
    var dry = Q.make("label", null, " 只校验不下单");
    var box = Q.make("input");
    box.type = "checkbox";
    box.id = "order-file-dry-run";
    dry.insertBefore(box, dry.firstChild);
    var send = Q.make("button", "primary", "上传并处理");
    send.type = "submit";
    [file, dry, send].forEach(function (n) { form.appendChild(n); });
    form.addEventListener("submit", upload);
    panel.appendChild(form);
    var msg = Q.make("div", "msg");
    msg.id = "order-files-msg";
    msg.hidden = true;
    panel.appendChild(msg);
    panel.appendChild(table("order-files-body", ["编号", "接收时间", "文件名", "来源", "方式", "状态", "行数", "成功", "失败", "说明"]));
    var detail = Q.make("div");
    detail.id = "order-file-detail";
    detail.hidden = true;
    detail.appendChild(Q.make("h3", null, "逐行结果"));
    detail.appendChild(table("order-file-lines", ["行号", "证券代码", "方向", "备注", "状态", "委托编号", "原因"]));
    panel.appendChild(detail);
    section.appendChild(panel);
    return section;
  }

  function table(bodyId, titles) {
    var wrap = Q.make("div", "table-wrap");
    var t = Q.make("table", "table");
    var head = Q.make("thead");
    var row = Q.make("tr");
    titles.forEach(function (title) { row.appendChild(Q.make("th", null, title)); });
    head.appendChild(row);
    t.appendChild(head);
    var body = Q.make("tbody");
    body.id = bodyId;
    t.appendChild(body);
    wrap.appendChild(t);
    return wrap;
  }

  function load() {
    return Q.get("/api/order-files?limit=100").then(renderFiles, function (err) { Q.showError("order-files-msg", err); });
  }

  function renderFiles(files) {
    var body = Q.$("order-files-body");
    Q.clear(body);
    files.forEach(function (f) {
      var row = Q.make("tr");
      row.setAttribute("data-file-id", f.id);
      [f.id, Q.fmtTime(f.received_at), f.name, f.source === "upload" ? "上传" : "目录", f.dry_run ? "只校验" : "下单",
        f.status_label, f.lines, f.ok, f.failed, f.message].forEach(function (v) { Q.cell(row, v); });
      row.style.cursor = "pointer";
      row.addEventListener("click", function () { renderLines(f.results); });
      body.appendChild(row);
    });
  }

  function renderLines(lines) {
    var body = Q.$("order-file-lines");
    Q.clear(body);
    lines.forEach(function (l) {
      var row = Q.make("tr");
      [l.line, l.stock_code, SIDE[l.side] || l.side, l.client_ref, STATUS[l.status] || l.status, l.order_id, l.reason]
        .forEach(function (v) { Q.cell(row, v); });
      body.appendChild(row);
    });
    Q.$("order-file-detail").hidden = false;
  }

  function upload(event) {
    event.preventDefault();
    var input = Q.$("order-file-input");
    if (!input.files.length) { Q.show("order-files-msg", "请选择 CSV 文件", "error"); return; }
    var data = new FormData();
    data.append("file", input.files[0]);
    data.append("dry_run", Q.$("order-file-dry-run").checked ? "true" : "false");
    Q.show("order-files-msg", "正在处理……");
    fetch(Q.apiUrl("/api/order-files"), { method: "POST", headers: Q.headers(), body: data, cache: "no-store" })
      .then(function (response) {
        return response.json().then(function (payload) {
          if (!response.ok || payload.status !== "success") throw new Q.ApiError(response.status, payload, "上传失败");
          return payload.data;
        });
      })
      .then(function (f) {
        input.value = "";
        if (f.status === "processing") { follow(f.id); return; }  // queued: the order-file thread executes it
        finished(f);
        load();
      }, function (err) { Q.showError("order-files-msg", err); });
  }

  function finished(f) {
    var kind = f.failed || f.message ? "warn" : "ok";
    Q.show("order-files-msg", "「" + f.name + "」" + (f.dry_run ? "校验" : "处理") + "完成：" + f.ok + " 行成功，" +
      f.failed + " 行失败" + (f.message ? "（" + f.message + "）" : ""), kind);
    renderLines(f.results);
  }

  // An uploaded file is queued and answered at once: follow it in the list until it is finished (a file
  // waiting for trading to resume or for its budget shows why, and is looked at less often).
  function follow(id) {
    Q.get("/api/order-files?limit=100").then(function (files) {
      renderFiles(files);
      var f = files.filter(function (x) { return x.id === id; })[0];
      if (!f) return;
      if (f.status !== "processing") { finished(f); return; }
      Q.show("order-files-msg", "「" + f.name + "」" + (f.message ? f.message : "已排队，正在逐行处理（已处理 " +
        f.results.length + " 行）……"), f.message ? "warn" : undefined);
      setTimeout(function () { follow(id); }, f.message ? 10000 : 1000);
    }, function (err) { Q.showError("order-files-msg", err); });
  }

  Q.addTab("order-files", "委托文件", build());
  Q.registerPage("order-files", load);
})();
