/* Daily candlestick chart drawn as SVG: candles (red up, green down), MA lines, volume bars, horizontal
   rule levels (cost, stop-loss, take-profit, dynamic stop, next add) and buy/sell markers from trade records.
   No dependencies; exposes window.QmtChart.render(container, spec). */
(function () {
  "use strict";

  var NS = "http://www.w3.org/2000/svg";
  var W = 1000, H = 440, LEFT = 8, RIGHT = 78, TOP = 14, PRICE_H = 310, GAP = 18, VOL_H = 70;
  var UP = "#d9342b", DOWN = "#138a4f";
  var MA_COLORS = { ma10: "#e6a118", ma20: "#8a4fd8", ma30: "#2a8bd8", ma60: "#6b7485" };

  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    var node = el("text", Object.assign({ x: x, y: y, "font-size": 12, fill: "#3b4458" }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  function fmt(price, digits) { return price == null ? "--" : Number(price).toFixed(digits); }

  function render(container, spec) {
    while (container.firstChild) container.removeChild(container.firstChild);
    var bars = (spec.bars || []).slice(-(spec.maxBars || 120));
    if (!bars.length) {
      var empty = document.createElement("p");
      empty.className = "muted";
      empty.textContent = "没有 " + (spec.code || "") + " 的日线数据";
      container.appendChild(empty);
      return null;
    }
    var digits = spec.digits || 2;
    var levels = (spec.levels || []).filter(function (l) { return l.price != null && l.price > 0; });
    var lows = bars.map(function (b) { return b.low; });
    var highs = bars.map(function (b) { return b.high; });
    levels.forEach(function (l) { lows.push(l.price); highs.push(l.price); });
    if (spec.currentPrice) { lows.push(spec.currentPrice); highs.push(spec.currentPrice); }
    var lo = Math.min.apply(null, lows), hi = Math.max.apply(null, highs);
    var pad = (hi - lo) * 0.06 || hi * 0.02 || 1;
    lo -= pad; hi += pad;
    var plotW = W - LEFT - RIGHT;
    var step = plotW / bars.length;
    var bodyW = Math.max(1, step * 0.7);
    function x(i) { return LEFT + step * i + step / 2; }
    function y(p) { return TOP + (hi - p) / (hi - lo) * PRICE_H; }
    var volTop = TOP + PRICE_H + GAP;
    var maxVol = Math.max.apply(null, bars.map(function (b) { return b.volume || 0; })) || 1;
    function vy(v) { return volTop + VOL_H - (v / maxVol) * VOL_H; }

    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": (spec.code || "") + " 日K线图" });
    el("rect", { x: 0, y: 0, width: W, height: H, fill: "#ffffff" }, svg);

    // grid and price axis
    var ticks = 6;
    for (var t = 0; t <= ticks; t++) {
      var price = lo + (hi - lo) * t / ticks;
      el("line", { x1: LEFT, x2: W - RIGHT, y1: y(price), y2: y(price), stroke: "#eef0f4" }, svg);
      text(svg, W - RIGHT + 4, y(price) + 4, fmt(price, digits), { fill: "#8a93a5", "font-size": 11 });
    }
    // date labels
    var every = Math.max(1, Math.round(bars.length / 6));
    for (var d = 0; d < bars.length; d += every) {
      text(svg, Math.max(x(d), LEFT + 32), H - 4, String(bars[d].date).slice(0, 10), { "text-anchor": "middle",
        fill: "#8a93a5", "font-size": 11 });
    }

    // volume and candles
    bars.forEach(function (b, i) {
      var color = b.close >= b.open ? UP : DOWN;
      el("rect", { x: x(i) - bodyW / 2, y: vy(b.volume || 0), width: bodyW, height: volTop + VOL_H - vy(b.volume || 0),
        fill: color, opacity: 0.45 }, svg);
      el("line", { x1: x(i), x2: x(i), y1: y(b.high), y2: y(b.low), stroke: color, "stroke-width": 1 }, svg);
      var top = y(Math.max(b.open, b.close)), bottom = y(Math.min(b.open, b.close));
      el("rect", { x: x(i) - bodyW / 2, y: top, width: bodyW, height: Math.max(1, bottom - top),
        fill: b.close >= b.open ? "#ffffff" : color, stroke: color, "stroke-width": 1,
        "stroke-dasharray": b.partial ? "2 1" : "none", "class": b.partial ? "candle partial" : "candle" }, svg);
    });

    // moving averages
    Object.keys(MA_COLORS).forEach(function (key) {
      var points = [];
      bars.forEach(function (b, i) { if (b[key] != null) points.push(x(i).toFixed(1) + "," + y(b[key]).toFixed(1)); });
      if (points.length > 1) {
        el("polyline", { points: points.join(" "), fill: "none", stroke: MA_COLORS[key], "stroke-width": 1.3,
          "class": "ma-line", "data-ma": key }, svg);
      }
    });

    // rule levels
    levels.forEach(function (l) {
      el("line", { x1: LEFT, x2: W - RIGHT, y1: y(l.price), y2: y(l.price), stroke: l.color,
        "stroke-width": 1.2, "stroke-dasharray": l.dash || "6 4", "class": "level", "data-level": l.key }, svg);
      el("rect", { x: W - RIGHT + 1, y: y(l.price) - 9, width: RIGHT - 2, height: 17, fill: l.color, rx: 3 }, svg);
      text(svg, W - RIGHT + 4, y(l.price) + 4, l.label + " " + fmt(l.price, digits), { fill: "#ffffff",
        "font-size": 11 });
    });
    if (spec.currentPrice) {
      el("line", { x1: LEFT, x2: W - RIGHT, y1: y(spec.currentPrice), y2: y(spec.currentPrice), stroke: "#1d2433",
        "stroke-width": 0.8, "stroke-dasharray": "2 3", "class": "level", "data-level": "current" }, svg);
    }

    // buy / sell markers
    var indexByDate = {};
    bars.forEach(function (b, i) { indexByDate[String(b.date).slice(0, 10)] = i; });
    (spec.trades || []).forEach(function (tr) {
      var day = String(tr.trade_time || tr.time || "").slice(0, 10);
      var i = indexByDate[day];
      if (i === undefined) return;
      var isBuy = String(tr.side).toLowerCase() === "buy";
      var b = bars[i];
      var my = isBuy ? y(b.low) + 16 : y(b.high) - 8;
      var g = el("g", { "class": "trade-marker", "data-side": isBuy ? "buy" : "sell" }, svg);
      var tip = el("title", {}, g);
      tip.textContent = (isBuy ? "买入 " : "卖出 ") + tr.volume + " 股 @ " + fmt(tr.price, digits) + "（" + day + "）";
      el("circle", { cx: x(i), cy: my - 4, r: 7, fill: isBuy ? UP : DOWN }, g);
      text(g, x(i), my, isBuy ? "B" : "S", { "text-anchor": "middle", fill: "#ffffff", "font-size": 10,
        "font-weight": 700 });
    });

    // hover read-out
    var info = text(svg, LEFT + 4, TOP + 2, "", { "font-size": 12, fill: "#1d2433" });
    var cross = el("line", { x1: 0, x2: 0, y1: TOP, y2: volTop + VOL_H, stroke: "#9aa3b5", "stroke-width": 0.6,
      visibility: "hidden" }, svg);
    function describe(i) {
      var b = bars[i];
      var parts = [String(b.date).slice(0, 10) + (b.partial ? "（今日，未收盘）" : ""), "开 " + fmt(b.open, digits), "高 " + fmt(b.high, digits),
        "低 " + fmt(b.low, digits), "收 " + fmt(b.close, digits), "量 " + Math.round((b.volume || 0) / 100) + " 手"];
      Object.keys(MA_COLORS).forEach(function (k) { if (b[k] != null) parts.push(k.toUpperCase() + " " + fmt(b[k], digits)); });
      return parts.join("  ");
    }
    info.textContent = describe(bars.length - 1);
    svg.addEventListener("mousemove", function (ev) {
      var box = svg.getBoundingClientRect();
      var px = (ev.clientX - box.left) / box.width * W;
      var i = Math.min(bars.length - 1, Math.max(0, Math.floor((px - LEFT) / step)));
      cross.setAttribute("x1", x(i)); cross.setAttribute("x2", x(i));
      cross.setAttribute("visibility", "visible");
      info.textContent = describe(i);
    });
    svg.addEventListener("mouseleave", function () {
      cross.setAttribute("visibility", "hidden");
      info.textContent = describe(bars.length - 1);
    });
    container.appendChild(svg);
    return svg;
  }

  window.QmtChart = { render: render };
})();
