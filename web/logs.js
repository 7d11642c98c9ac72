/* The 「日志」 page: the daemon's newest log lines (GET /api/logs) filtered by level and text, then every new
   line live (GET /api/logs/stream, server-sent events) while the page is shown. Lines arrive masked. */
(function () {
  "use strict";

  var Q = window.Qmt;
  var $ = Q.$, make = Q.make, clear = Q.clear;
  var LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
  var MAX_LINES = 2000;
  var stream = null, version = 0, filterTimer = null;

  function filters() {
    var form = $("logs-form");
    return { level: form.level.value, q: form.q.value.trim(), follow: form.follow.checked };
  }

  function passes(line, f) {
    if (f.level && LEVELS.indexOf(line.level) < LEVELS.indexOf(f.level)) return false;
    if (!f.q) return true;
    var needle = f.q.toLowerCase();
    return line.message.toLowerCase().indexOf(needle) >= 0 || line.logger.toLowerCase().indexOf(needle) >= 0;
  }

  function lineNode(line) {
    var row = make("div", "log-line log-" + line.level.toLowerCase());
    row.setAttribute("data-seq", line.seq);
    row.appendChild(make("span", "log-time", line.time.replace("T", " ")));
    row.appendChild(make("span", "log-level", Q.LEVEL_LABELS[line.level] || line.level));
    row.appendChild(make("span", "log-thread", Q.threadLabel(line.thread)));
    row.appendChild(make("span", "log-message", line.message));
    row.title = line.logger;
    return row;
  }

  function append(lines) {
    var box = $("logs-box"), f = filters();
    var atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    lines.forEach(function (line) {
      if (line.seq <= version) return;  // already shown by a reload that overlapped the stream
      if (passes(line, f)) box.appendChild(lineNode(line));
      version = line.seq;
    });
    while (box.childElementCount > MAX_LINES) box.removeChild(box.firstChild);
    if (f.follow && (atEnd || lines.length)) box.scrollTop = box.scrollHeight;
  }

  function reload() {
    var f = filters();
    var query = "?limit=" + MAX_LINES + (f.level ? "&level=" + f.level : "") + (f.q ? "&q=" + encodeURIComponent(f.q) : "");
    return Q.get("/api/logs" + query).then(function (data) {
      clear($("logs-box"));
      Q.show("logs-msg", data.lines.length ? "" : "没有符合条件的日志");
      version = 0;
      append(data.lines);
      version = data.version;
    }, function (err) { Q.showError("logs-msg", err); });
  }

  function load() {
    reload().then(function () {
      if (stream) return;
      stream = Q.eventStream(function () { return "/api/logs/stream?after=" + version; }, function (event, payload) {
        if (event !== "logs") return;
        if (payload.lines.length) Q.show("logs-msg", "");
        append(payload.lines);
      }, function (on, text) { $("logs-state").textContent = on ? "● 实时" : text; });
    });
  }

  function leave() {
    if (stream) stream.close();
    stream = null;
  }

  function init() {
    var form = $("logs-form");
    form.addEventListener("submit", function (ev) { ev.preventDefault(); reload(); });
    form.level.addEventListener("change", reload);
    form.q.addEventListener("input", function () {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(reload, 300);
    });
    $("logs-clear").addEventListener("click", function () { clear($("logs-box")); });
  }

  document.addEventListener("DOMContentLoaded", init);
  Q.registerPage("logs", { load: load, leave: leave });
})();
