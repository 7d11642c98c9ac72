/* The stock pool tab: load and save the pool's codes.
   Part of the main page (index.html): shares window.QmtApp (app_state.js) with the other parts; app.js wires them. */
(function () {
  "use strict";

  var Q = window.Qmt, A = window.QmtApp;
  var $ = Q.$, show = Q.show, showError = Q.showError, get = Q.get, post = Q.post;

  // ---- stock pool --------------------------------------------------------------------------------
  function loadPool() {
    get("/api/stock_pool").then(function (p) {
      $("pool-text").value = p.stocks.join("\n");
      $("pool-count").textContent = "共 " + p.count + " 只";
    }, function (err) { showError("pool-msg", err); });
  }

  function savePool() {
    var codes = $("pool-text").value.split(/[\s,，;；]+/).filter(function (c) { return c; });
    post("/api/stock_pool", { stocks: codes }).then(function (p) {
      $("pool-text").value = p.stocks.join("\n");
      $("pool-text").classList.remove("invalid");
      $("pool-count").textContent = "共 " + p.count + " 只";
      show("pool-msg", "股票池已保存：" + p.count + " 只", "ok");
    }, function (err) {
      $("pool-text").classList.add("invalid");
      var text = err.message;
      if (Array.isArray(err.errors) && err.errors.length > 1) text += "\n" + err.errors.join("\n");
      show("pool-msg", text, "error");
    });
  }

  A.loadPool = loadPool; A.savePool = savePool;
})();
