/* Operator safety on the page (issue 14): the trading state (运行中 / 已暂停自动交易 / 紧急停止) in the header
   with its pause and resume buttons, and the wording of confirmations that must say exactly what will happen.
   Exposes window.QmtOperator; app.js calls renderState() with every /api/status answer. */
(function () {
  "use strict";

  var Q = window.Qmt;
  var $ = Q.$, show = Q.show, showError = Q.showError, fmtInt = Q.fmtInt, post = Q.post;
  var current = { state: "running" };
  var onChanged = function () {};

  function renderState(ts) {
    if (!ts) return;
    current = ts;
    var badge = $("trading-state");
    badge.textContent = "交易状态：" + ts.label;
    badge.className = "badge state-" + ts.state;
    badge.title = ts.state === "running" ? "自动交易按「自动交易」开关执行"
      : (ts.reason || "") + (ts.source ? "（来源：" + ts.source + "，" + Q.fmtTime(ts.changed_at) + "）" : "");
    $("state-pause").hidden = ts.state !== "running";
    $("state-resume").hidden = ts.state === "running";
    document.body.classList.toggle("halted", ts.state === "halted");
  }

  function isHalted() { return current.state === "halted"; }

  function pause() {
    Q.confirmDialog("暂停自动交易", "暂停后不再自动下单：信号继续检测并排队，手动委托和手动执行信号不受影响。确认暂停？")
      .then(function (yes) {
        if (!yes) return;
        post("/api/actions/pause").then(function (r) {
          renderState(r.trading_state);
          show("global-msg", r.message, "warn");
          onChanged();
        }, function (err) { showError("global-msg", err); });
      });
  }

  function resume() {
    var from = current.state === "halted" ? "紧急停止" : "暂停";
    Q.confirmDialog("恢复交易", "解除「" + from + "」，恢复正常交易：自动交易将按「自动交易」开关" +
      "执行新信号。确认恢复？").then(function (yes) {
      if (!yes) return;
      post("/api/actions/resume", { confirm: true }).then(function (r) {
        renderState(r.trading_state);
        show("global-msg", r.message, "ok");
        onChanged();
      }, function (err) { showError("global-msg", err); });
    });
  }

  /* The shares a sell of `ratio` of `available` sends (market_rules.sell_volume_for_ratio): whole lots
     rounded down, all of it when that rounds to nothing. */
  function sellVolumeForRatio(code, available, ratio) {
    if (!(available > 0)) return 0;
    var wanted = Math.floor(available * ratio + 1e-9);
    var star = /^68[89]/.test(code || "");
    var volume = star ? (wanted >= 200 ? wanted : 0) : Math.floor(wanted / 100) * 100;
    if (volume <= 0 || (!star && volume % 100 !== 0 && volume !== available)) return available;
    return volume;
  }

  function ratioText(ratio) {
    if (ratio >= 1) return "全部";
    if (Math.abs(ratio - 0.5) < 1e-9) return "一半";
    return Math.round(ratio * 1000) / 10 + "%";
  }

  /* 「卖出 100 股（可用 300 股的一半）」 */
  function sellText(code, available, ratio) {
    var volume = sellVolumeForRatio(code, available, ratio);
    return "卖出 " + fmtInt(volume) + " 股（可用 " + fmtInt(available) + " 股的" + ratioText(ratio) + "）";
  }

  /* What a halted account adds to a sell confirmation: the sell is the one order a stop lets through. */
  function haltNote() {
    return isHalted() ? "\n当前处于紧急停止状态：确认后这笔卖出作为经确认的手动卖出下单。" : "";
  }

  function init(changed) {
    onChanged = changed || onChanged;
    $("state-pause").addEventListener("click", pause);
    $("state-resume").addEventListener("click", resume);
  }

  window.QmtOperator = {
    init: init, renderState: renderState, isHalted: isHalted, sellVolumeForRatio: sellVolumeForRatio,
    sellText: sellText, haltNote: haltNote
  };
})();
