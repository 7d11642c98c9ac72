/* Shared by the page scripts: DOM and number formatting helpers, the JSON API client (the token goes in the
   X-API-Token header), and the confirmation dialog. Exposes window.Qmt. */
(function () {
  "use strict";

  // ---- helpers -----------------------------------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function make(tag, cls, content) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (content != null) node.textContent = content;
    return node;
  }
  function cell(row, content, cls) { var td = make("td", cls, content); row.appendChild(td); return td; }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  // funds and convertible bonds (SH 110/111/113/118, SZ 123/127/128) are priced to 0.001 (issue 28)
  function isEtf(code) { return /^(51|56|58|15|16|11[0138]|12[378])/.test(code || ""); }
  function digitsOf(code) { return isEtf(code) ? 3 : 2; }
  function fmtPrice(v, code) { return v == null || v === "" ? "--" : Number(v).toFixed(digitsOf(code)); }
  function fmtMoney(v) {
    if (v == null || v === "") return "--";
    return Number(v).toLocaleString("zh-CN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function fmtInt(v) { return v == null ? "--" : Number(v).toLocaleString("zh-CN"); }
  function fmtPct(v) { return v == null ? "--" : (v > 0 ? "+" : "") + Number(v).toFixed(2) + "%"; }
  function signClass(v) { return v > 0 ? "up" : (v < 0 ? "down" : ""); }
  function fmtTime(text) { return text ? String(text).replace("T", " ") : "--"; }
  function jsonText(v) { return v == null ? "" : (typeof v === "string" ? v : JSON.stringify(v)); }

  /* A number typed by a person: "" → undefined, numeric text → Number, anything else is sent as typed so
     that the server answers with its own Chinese message. */
  function numberField(value) {
    var text = String(value == null ? "" : value).trim();
    if (text === "") return undefined;
    return /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(text) ? Number(text) : text;
  }

  function show(target, text, kind) {
    var node = typeof target === "string" ? $(target) : target;
    if (!node) return;
    node.textContent = text || "";
    node.className = "msg" + (kind ? " " + kind : "");
    node.hidden = !text;
  }
  function showError(target, err) { show(target, errorText(err), "error"); }
  /* The API names a body field after its Chinese label for API users (「买入数量（volume）」); the page
     shows the label only. */
  function withoutFieldNames(text) { return String(text).replace(/（[a-z][a-z0-9_]*）/g, ""); }
  function errorText(err) {
    if (!err) return "未知错误";
    var text = withoutFieldNames(err.message || String(err));
    if (err.errors && typeof err.errors === "object" && !Array.isArray(err.errors)) {
      var details = Object.keys(err.errors).map(function (k) { return k + "：" + err.errors[k]; });
      if (details.length > 1) text += "\n" + details.join("\n");
    }
    return text;
  }

  // ---- API ---------------------------------------------------------------------------------------
  var meta = document.querySelector('meta[name="api-token"]');
  var token = meta && meta.content && meta.content !== "__API_TOKEN__" ? meta.content : "";
  if (!token) token = sessionStorage.getItem("qmt_api_token") || "";

  /* A token typed by the user (pages opened from another machine get none): kept for this browser tab. */
  function setToken(value) {
    token = value;
    sessionStorage.setItem("qmt_api_token", value);
  }
  function hasToken() { return !!token; }

  function headers(extra) {
    var h = Object.assign({ "Accept": "application/json" }, extra || {});
    if (token) h["X-API-Token"] = token;
    return h;
  }

  function ApiError(status, payload, fallback) {
    this.status = status;
    this.code = (payload && payload.code) || "HTTP_" + status;
    this.message = (payload && payload.message) || fallback;
    this.errors = payload && payload.errors;
    this.payload = payload;
  }

  /* Under the account supervisor (python main.py --accounts) the page works for the selected account: every
     "/api/x" call goes to "/api/accounts/<id>/x", which the supervisor forwards to that account's daemon. */
  var supervisorMeta = document.querySelector('meta[name="qmt-supervisor"]');
  var accountIds = supervisorMeta ? supervisorMeta.content.split(",").filter(Boolean) : [];
  var account = sessionStorage.getItem("qmt_account") || "";
  if (accountIds.indexOf(account) < 0) account = accountIds[0] || "";
  function apiUrl(path) {
    if (!account || path.indexOf("/api/") !== 0 || path.indexOf("/api/accounts") === 0) return path;
    return "/api/accounts/" + encodeURIComponent(account) + path.slice(4);
  }
  function selectAccount(id) { sessionStorage.setItem("qmt_account", id); }


  function api(method, path, body) {
    var init = { method: method, headers: headers(), cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(apiUrl(path), init).then(function (response) {
      return response.text().then(function (text) {
        var payload = null;
        try { payload = text ? JSON.parse(text) : null; } catch (e) { payload = null; }
        if (!response.ok || !payload || payload.status !== "success") {
          if (response.status === 401) $("token-bar").hidden = false;
          throw new ApiError(response.status, payload, "请求失败（HTTP " + response.status + "）");
        }
        return payload.data;
      });
    }, function (err) {
      throw new ApiError(0, null, "无法连接服务器：" + (err && err.message ? err.message : err));
    });
  }
  var get = function (path) { return api("GET", path); };
  var post = function (path, body) { return api("POST", path, body === undefined ? {} : body); };

  // ---- confirmation dialog -----------------------------------------------------------------------
  function confirmDialog(title, text) {
    return new Promise(function (resolve) {
      $("modal-title").textContent = title;
      $("modal-text").textContent = text;
      $("modal").hidden = false;
      $("modal-ok").focus();
      function done(answer) {
        $("modal").hidden = true;
        $("modal-ok").removeEventListener("click", yes);
        $("modal-cancel").removeEventListener("click", no);
        resolve(answer);
      }
      function yes() { done(true); }
      function no() { done(false); }
      $("modal-ok").addEventListener("click", yes);
      $("modal-cancel").addEventListener("click", no);
    });
  }

  // ---- server-sent events over fetch (the token travels in a header, never in a URL) ---------------
  /* Opens `path()` as an event stream, calls onEvent(name, payload) per event and onState(connected, text);
     reconnects 2 s after a break until close() is called. */
  function eventStream(path, onEvent, onState) {
    var closed = false, controller = null, timer = null;
    onState = onState || function () {};
    function open() {
      if (closed) return;
      controller = new AbortController();
      onState(false, "连接中…");
      fetch(apiUrl(path()), { headers: headers({ "Accept": "text/event-stream" }), cache: "no-store",
        signal: controller.signal })
        .then(function (response) {
          if (!response.ok || !response.body) {
            return response.json().then(function (payload) {
              throw new ApiError(response.status, payload, "实时推送连接失败");
            }, function () { throw new ApiError(response.status, null, "实时推送连接失败"); });
          }
          onState(true, "实时");
          return pump(response.body.getReader());
        })
        .then(function () { retry("实时推送已断开，重连中…"); }, function (err) { retry(errorText(err)); });
    }
    function retry(reason) {
      if (closed) return;
      onState(false, reason);
      timer = setTimeout(open, 2000);
    }
    function pump(reader) {
      var decoder = new TextDecoder("utf-8"), buffer = "";
      function next() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return;
          buffer += decoder.decode(chunk.value, { stream: true });
          var parts = buffer.split("\n\n");
          buffer = parts.pop();
          parts.forEach(dispatch);
          return next();
        });
      }
      return next();
    }
    function dispatch(block) {
      var event = "message", data = [];
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) event = line.slice(6).trim();
        else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
      });
      if (!data.length) return;
      var payload;
      try { payload = JSON.parse(data.join("\n")); } catch (e) { return; }
      onEvent(event, payload);
    }
    open();
    return { close: function () { closed = true; clearTimeout(timer); if (controller) controller.abort(); } };
  }

  // ---- pages ---------------------------------------------------------------------------------------
  /* A page = a nav link <a href="#name" data-tab="name">, a <section id="tab-name" class="tab" hidden> (in
     index.html, or built by its script and added with Qmt.addTab) and a script that calls
     Qmt.registerPage("name", { load: fn, leave: fn? }) (or just the load function) when it runs, before app.js
     shows the first page. load() runs each time the page is shown, leave() when another page is shown; app.js
     is the one router. Qmt.onStream(fn) receives every live positions event. */
  var pages = {}, streamListeners = [];
  function registerPage(name, page) { pages[name] = typeof page === "function" ? { load: page } : page; }
  function addTab(name, label, section) {
    var link = make("a", null, label);
    link.href = "#" + name;
    link.setAttribute("data-tab", name);
    $("tabs").appendChild(link);
    section.id = "tab-" + name;
    section.className = "tab";
    section.hidden = true;
    document.querySelector("main").appendChild(section);
  }
  function onStream(listener) { streamListeners.push(listener); }
  function emitStream(event, payload) {
    streamListeners.forEach(function (listener) {
      try { listener(event, payload); } catch (e) { console.error(e); }
    });
  }

  // ---- Chinese names of what the daemon reports ------------------------------------------------------
  var THREAD_LABELS = { data: "数据", monitor: "监控", strategy: "策略", sync: "同步", orders: "委托",
    housekeeping: "日常维护", web: "网页", watchdog: "看门狗", broker_sync: "券商同步", MainThread: "主线程",
    probe: "探针", watch: "盯盘", storage: "存储检查", order_files: "委托文件", notifier: "通知发送", jobs: "定时任务",
    notify_watch: "通知监视", protection: "持仓保护", heartbeat: "心跳", grid: "网格交易" };
  function threadLabel(name) {
    if (!name) return "";
    if (THREAD_LABELS[name]) return THREAD_LABELS[name];
    if (/^waitress/.test(name)) return "网页";
    return name;
  }
  var LEVEL_LABELS = { DEBUG: "调试", INFO: "信息", WARNING: "警告", ERROR: "错误", CRITICAL: "严重" };

  window.Qmt = {
    $: $, make: make, cell: cell, clear: clear, digitsOf: digitsOf, fmtPrice: fmtPrice, fmtMoney: fmtMoney,
    fmtInt: fmtInt, fmtPct: fmtPct, signClass: signClass, fmtTime: fmtTime, jsonText: jsonText,
    numberField: numberField, show: show, showError: showError, errorText: errorText, headers: headers,
    setToken: setToken, hasToken: hasToken, ApiError: ApiError, get: get, post: post, confirmDialog: confirmDialog,
    apiUrl: apiUrl, account: function () { return account; }, accountIds: accountIds, selectAccount: selectAccount,
    eventStream: eventStream, registerPage: registerPage, addTab: addTab, pages: pages, onStream: onStream, emitStream: emitStream,
    threadLabel: threadLabel, LEVEL_LABELS: LEVEL_LABELS, api: api
  };
})();
