/* The 「通知」 page (issue 16): notification channels (URLs shown masked) with their events and a
   「发送测试消息」 button each, the outbox with each message's outcome, the 「定时任务」 panel (schedule, last
   and next run, 「立即运行」) and the daily reports (listed, shown in a frame); refreshed every 5 s while shown. */
(function () {
  "use strict";

  var Q = window.Qmt;
  var $ = Q.$, make = Q.make, cell = Q.cell, clear = Q.clear, show = Q.show, showError = Q.showError;
  var get = Q.get, post = Q.post, fmtTime = Q.fmtTime;
  var kinds = [];
  var timer = null;

  function del(path) {
    return fetch(Q.apiUrl(path), { method: "DELETE", headers: Q.headers(), cache: "no-store" }).then(function (response) {
      return response.json().then(function (payload) {
        if (!response.ok || payload.status !== "success") throw new Q.ApiError(response.status, payload, "删除失败");
        return payload.data;
      });
    });
  }

  function build() {
    var root = $("tab-notify");
    if (!root || root.childElementCount) return;
    root.innerHTML =
      '<div class="panel"><h2>通知渠道</h2><div id="notify-msg" class="msg" hidden></div>' +
      '<div class="table-wrap"><table class="table compact"><thead><tr><th>名称</th><th>地址</th><th>事件</th>' +
      '<th>来源</th><th>发送统计</th><th>告警</th><th>操作</th></tr></thead><tbody id="notify-channels"></tbody>' +
      '</table></div>' +
      '<form id="notify-form" class="form-row"><input name="name" placeholder="名称，如 我的邮箱" maxlength="40">' +
      '<input name="url" placeholder="apprise 地址，如 json://127.0.0.1:8080/hook、mailto://…、dingtalk://…" ' +
      'size="48" autocomplete="off"><button type="submit">添加渠道</button></form>' +
      '<details><summary>接收的事件（不选 = 全部）</summary><div id="notify-kinds" class="kinds"></div></details>' +
      '</div>' +
      '<div class="panel"><h2>定时任务</h2><div id="jobs-msg" class="msg" hidden></div>' +
      '<div class="table-wrap"><table class="table compact"><thead><tr><th>任务</th><th>时间</th><th>补跑策略</th>' +
      '<th>上次运行</th><th>结果</th><th>下次运行</th><th>操作</th></tr></thead><tbody id="jobs-body"></tbody></table>' +
      '</div></div>' +
      '<div class="panel"><h2>每日报告</h2><div id="reports-list" class="reports"></div>' +
      '<iframe id="report-frame" title="每日报告" hidden></iframe></div>' +
      '<div class="panel"><h2>消息记录</h2><div class="table-wrap"><table class="table compact"><thead><tr>' +
      '<th>编号</th><th>渠道</th><th>标题</th><th>内容</th><th>状态</th><th>尝试</th><th>最后错误</th><th>创建</th>' +
      '<th>发送</th></tr></thead><tbody id="notify-messages"></tbody></table></div></div>';
    $("notify-form").addEventListener("submit", addChannel);
    var frame = $("report-frame");  // sized through the CSSOM: the page's CSP forbids style attributes
    frame.style.width = "100%";
    frame.style.height = "640px";
    frame.style.border = "1px solid #ccc";
  }

  function load() {
    get("/api/notify/channels").then(renderChannels, function (err) { showError("notify-msg", err); });
    get("/api/notify/messages?limit=100").then(renderMessages, function () {});
    get("/api/jobs").then(renderJobs, function (err) { showError("jobs-msg", err); });
    get("/api/reports").then(renderReports, function () {});
  }

  function renderChannels(data) {
    if (!kinds.length) {
      kinds = data.event_kinds;
      var box = $("notify-kinds");
      kinds.forEach(function (k) {
        var label = make("label", "kind");
        var input = make("input");
        input.type = "checkbox";
        input.value = k.value;
        label.appendChild(input);
        label.appendChild(document.createTextNode(k.label));
        box.appendChild(label);
      });
    }
    var labels = {};
    kinds.forEach(function (k) { labels[k.value] = k.label; });
    var body = $("notify-channels");
    clear(body);
    data.channels.forEach(function (c) {
      var row = make("tr");
      row.setAttribute("data-channel", c.id);
      cell(row, c.name);
      cell(row, c.url);
      cell(row, c.events.length ? c.events.map(function (e) { return labels[e] || e; }).join("、") : "全部");
      cell(row, c.source === "config" ? "配置文件" : "网页");
      var counts = c.counts || {};
      cell(row, "已发送 " + (counts.sent || 0) + "，待发送 " + (counts.pending || 0) + "，失败 " + (counts.failed || 0));
      cell(row, c.alarm || "", c.alarm ? "down" : "");
      var actions = cell(row, "");
      var test = make("button", "small", "发送测试消息");
      test.type = "button";
      test.addEventListener("click", function () {
        post("/api/notify/test", { channel_id: c.id }).then(function (r) {
          show("notify-msg", r.message, "ok");
          setTimeout(load, 1000);
        }, function (err) { showError("notify-msg", err); });
      });
      actions.appendChild(test);
      if (c.source !== "config") {
        var remove = make("button", "small", "删除");
        remove.type = "button";
        remove.addEventListener("click", function () {
          Q.confirmDialog("删除通知渠道", "确定删除渠道「" + c.name + "」？").then(function (yes) {
            if (yes) del("/api/notify/channels/" + c.id).then(load, function (err) { showError("notify-msg", err); });
          });
        });
        actions.appendChild(remove);
      }
      body.appendChild(row);
    });
    if (!data.channels.length) {
      var empty = make("tr");
      cell(empty, "尚未配置通知渠道").colSpan = 7;
      body.appendChild(empty);
    }
  }

  function renderMessages(data) {
    var body = $("notify-messages");
    clear(body);
    data.messages.forEach(function (m) {
      var row = make("tr");
      row.setAttribute("data-status", m.status);
      [m.id, m.channel_name, m.title, m.body, m.status_label, m.attempts, m.last_error || "", fmtTime(m.created_at),
       fmtTime(m.sent_at)].forEach(function (v, i) {
        cell(row, v == null ? "" : String(v), i === 4 ? (m.status === "failed" ? "down" : "") : (i === 3 ? "pre" : ""));
      });
      body.appendChild(row);
    });
  }

  function renderJobs(data) {
    var body = $("jobs-body");
    clear(body);
    data.jobs.forEach(function (j) {
      var row = make("tr");
      row.setAttribute("data-job", j.id);
      var last = j.last_run;
      cell(row, j.name);
      cell(row, j.schedule);
      cell(row, j.catch_up_label);
      cell(row, last ? last.day + "（" + fmtTime(last.started_at) + "）" : "从未运行");
      cell(row, last ? last.status_label + "：" + last.result : "", last && last.status === "failed" ? "down" : "");
      cell(row, fmtTime(j.next_run));
      var run = make("button", "small", "立即运行");
      run.type = "button";
      run.addEventListener("click", function () {
        run.disabled = true;
        post("/api/jobs/" + j.id + "/trigger").then(function (r) {
          show("jobs-msg", r.message, r.run.status === "ok" ? "ok" : "error");
          load();
        }, function (err) { showError("jobs-msg", err); }).then(function () { run.disabled = false; });
      });
      cell(row, "").appendChild(run);
      body.appendChild(row);
    });
  }

  function renderReports(data) {
    var box = $("reports-list");
    clear(box);
    if (!data.reports.length) box.appendChild(make("span", "muted", "暂无报告（每个交易日收盘后生成）"));
    data.reports.forEach(function (r) {
      var link = make("a", "report-link", r.day);
      link.href = Q.apiUrl("/api/reports/" + r.day);
      link.addEventListener("click", function (event) {
        event.preventDefault();
        $("report-frame").src = link.href;
        $("report-frame").hidden = false;
      });
      box.appendChild(link);
      box.appendChild(document.createTextNode(" "));
    });
  }

  function addChannel(event) {
    event.preventDefault();
    var form = $("notify-form");
    var events = Array.prototype.map.call(document.querySelectorAll("#notify-kinds input:checked"),
                                          function (i) { return i.value; });
    post("/api/notify/channels", { name: form.name.value, url: form.url.value, events: events }).then(function (r) {
      show("notify-msg", r.message, "ok");
      form.url.value = "";
      load();
    }, function (err) { showError("notify-msg", err); });
  }

  function enter() {
    leave();  // shown again without leaving (the same hash once more): one refresh timer only
    build();
    load();
    timer = setInterval(load, 5000);
  }

  function leave() {
    if (timer) { clearInterval(timer); timer = null; }
  }

  Q.registerPage("notify", { load: enter, leave: leave });
})();
