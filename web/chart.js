/* Charts on TradingView lightweight-charts (web/vendor/lightweight-charts, Apache-2.0).
   QmtChart.kline(box, readout): daily candles (red up, green down), volume, MA10/20/30/60, the rule levels as
   labelled price lines that move live, B/S markers of the stock's fills, and a MACD pane (DIF, DEA, histogram)
   marking the golden/dead crosses the MACD rule acts on (the server marks them with the rule's own test).
   Crosshair read-out, zoom (wheel / pinch) and pan (drag) come from the library.
   QmtChart.intraday(box, header): today's 分时 line from the quotes seen, with the average, the previous
   close and the limit prices. The newest chart objects are QmtChart.current / QmtChart.currentIntraday. */
(function () {
  "use strict";

  var LW = window.LightweightCharts;
  var UP = "#d9342b", DOWN = "#138a4f", MUTED = "#6b7485";
  var MAS = [["ma10", "MA10", "#e6a118"], ["ma20", "MA20", "#8a4fd8"], ["ma30", "MA30", "#2a8bd8"],
    ["ma60", "MA60", "#6b7485"]];
  var CROSS_LABELS = { golden: "金叉", death: "死叉" };

  function fmt(v, digits) { return v == null || isNaN(v) ? "--" : Number(v).toFixed(digits); }
  function day(text) { return String(text || "").slice(0, 10); }

  function baseOptions(box) {
    return {
      autoSize: true,
      layout: { background: { color: "#ffffff" }, textColor: "#3b4458", fontSize: 11, attributionLogo: false,
        fontFamily: "\"PingFang SC\", \"Microsoft YaHei\", \"WenQuanYi Micro Hei\", sans-serif" },
      localization: { locale: "zh-CN", dateFormat: "yyyy-MM-dd" },
      grid: { vertLines: { color: "#f0f2f6" }, horzLines: { color: "#f0f2f6" } },
      crosshair: { mode: LW.CrosshairMode.Normal },
      rightPriceScale: { borderColor: "#dfe3ea" },
      timeScale: { borderColor: "#dfe3ea", rightOffset: 3 },
      handleScroll: true, handleScale: true,
      height: box.clientHeight || 360
    };
  }

  // ---- daily K-line ---------------------------------------------------------------------------------
  function kline(box, readout) {
    while (box.firstChild) box.removeChild(box.firstChild);
    var chart = LW.createChart(box, baseOptions(box));
    var candles = chart.addSeries(LW.CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN, wickUpColor: UP, wickDownColor: DOWN,
      priceLineVisible: false
    });
    var volume = chart.addSeries(LW.HistogramSeries, { priceScaleId: "vol", priceFormat: { type: "volume" },
      lastValueVisible: false, priceLineVisible: false });
    chart.priceScale("vol").applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
    candles.priceScale().applyOptions({ scaleMargins: { top: 0.06, bottom: 0.22 } });
    var maSeries = MAS.map(function (m) {
      return chart.addSeries(LW.LineSeries, { color: m[2], lineWidth: 1, priceLineVisible: false,
        lastValueVisible: false, crosshairMarkerVisible: false, title: "" });
    });
    var macdHist = chart.addSeries(LW.HistogramSeries, { priceLineVisible: false, lastValueVisible: false,
      priceFormat: { type: "price", precision: 3, minMove: 0.001 } }, 1);
    var dif = chart.addSeries(LW.LineSeries, { color: "#1d2433", lineWidth: 1, priceLineVisible: false,
      lastValueVisible: false, crosshairMarkerVisible: false }, 1);
    var dea = chart.addSeries(LW.LineSeries, { color: "#e6a118", lineWidth: 1, priceLineVisible: false,
      lastValueVisible: false, crosshairMarkerVisible: false }, 1);
    var panes = chart.panes();
    if (panes[1]) panes[1].setHeight(Math.round((box.clientHeight || 420) * 0.26));
    var tradeMarkers = LW.createSeriesMarkers(candles, []);
    var crossMarkers = LW.createSeriesMarkers(macdHist, []);
    var lines = {};
    var model = { code: "", bars: [], byDay: {}, trades: {}, digits: 2, crosses: [] };

    function describe(index) {
      var b = model.bars[index];
      if (!b) return "";
      var prev = model.bars[index - 1];
      var change = prev && prev.close ? (b.close / prev.close - 1) * 100 : null;
      var d = model.digits;
      var parts = [day(b.date) + (b.partial ? "（今日，未收盘）" : ""), "开 " + fmt(b.open, d), "高 " + fmt(b.high, d),
        "低 " + fmt(b.low, d), "收 " + fmt(b.close, d),
        "涨跌 " + (change == null ? "--" : (change > 0 ? "+" : "") + change.toFixed(2) + "%"),
        "量 " + Math.round((b.volume || 0) / 100).toLocaleString("zh-CN") + " 手"];
      MAS.forEach(function (m) { if (b[m[0]] != null) parts.push(m[1] + " " + fmt(b[m[0]], d)); });
      if (b.macd_dif != null) parts.push("DIF " + fmt(b.macd_dif, 3) + " DEA " + fmt(b.macd_dea, 3) +
        " MACD " + fmt(b.macd_hist, 3));
      if (b.macd_cross) parts.push("MACD " + CROSS_LABELS[b.macd_cross]);
      (model.trades[day(b.date)] || []).forEach(function (t) {
        parts.push((t.side === "buy" ? "买入 " : "卖出 ") + t.volume + " 股 @ " + fmt(t.price, d) +
          "（" + (t.rule_label || t.strategy || "") + "）");
      });
      return parts.join("  ");
    }
    function showReadout(index) { if (readout) readout.textContent = describe(index); }

    chart.subscribeCrosshairMove(function (param) {
      if (!param || param.time === undefined) { showReadout(model.bars.length - 1); return; }
      var index = model.byDay[typeof param.time === "string" ? param.time : toDay(param.time)];
      showReadout(index == null ? model.bars.length - 1 : index);
    });

    function toDay(t) {
      if (typeof t === "object" && t.year) {
        return t.year + "-" + String(t.month).padStart(2, "0") + "-" + String(t.day).padStart(2, "0");
      }
      return new Date(t * 1000).toISOString().slice(0, 10);
    }

    function candle(b) { return { time: day(b.date), open: b.open, high: b.high, low: b.low, close: b.close }; }
    function volumeBar(b) {
      return { time: day(b.date), value: b.volume || 0, color: b.close >= b.open ? "rgba(217,52,43,0.45)" : "rgba(19,138,79,0.45)" };
    }

    function setData(spec) {
      model.code = spec.code;
      model.digits = spec.digits || 2;
      model.bars = (spec.bars || []).slice();
      model.byDay = {};
      model.bars.forEach(function (b, i) { model.byDay[day(b.date)] = i; });
      var fmtOpts = { type: "price", precision: model.digits, minMove: model.digits === 3 ? 0.001 : 0.01 };
      candles.applyOptions({ priceFormat: fmtOpts });
      candles.setData(model.bars.map(candle));
      volume.setData(model.bars.map(volumeBar));
      MAS.forEach(function (m, k) {
        maSeries[k].setData(model.bars.filter(function (b) { return b[m[0]] != null; })
          .map(function (b) { return { time: day(b.date), value: b[m[0]] }; }));
      });
      var withMacd = model.bars.filter(function (b) { return b.macd_hist != null; });
      macdHist.setData(withMacd.map(function (b) {
        return { time: day(b.date), value: b.macd_hist, color: b.macd_hist >= 0 ? UP : DOWN };
      }));
      dif.setData(withMacd.map(function (b) { return { time: day(b.date), value: b.macd_dif }; }));
      dea.setData(withMacd.map(function (b) { return { time: day(b.date), value: b.macd_dea }; }));
      model.crosses = model.bars.filter(function (b) { return b.macd_cross; })
        .map(function (b) { return { date: day(b.date), kind: b.macd_cross }; });
      crossMarkers.setMarkers(model.crosses.map(function (c) {
        return { time: c.date, position: c.kind === "golden" ? "belowBar" : "aboveBar",
          shape: c.kind === "golden" ? "arrowUp" : "arrowDown", color: c.kind === "golden" ? UP : DOWN,
          text: CROSS_LABELS[c.kind] };
      }));
      setTrades(spec.trades || []);
      var count = model.bars.length;
      if (count) chart.timeScale().setVisibleLogicalRange({ from: Math.max(0, count - 90), to: count + 2 });
      showReadout(count - 1);
    }

    function setTrades(trades) {
      model.trades = {};
      var markers = [];
      trades.forEach(function (t) {
        var d = day(t.trading_day || t.trade_time);
        if (model.byDay[d] == null) return;
        (model.trades[d] = model.trades[d] || []).push(t);
      });
      Object.keys(model.trades).sort().forEach(function (d) {
        var list = model.trades[d];
        ["buy", "sell"].forEach(function (side) {
          var mine = list.filter(function (t) { return t.side === side; });
          if (!mine.length) return;
          var rules = mine.map(function (t) { return t.rule_label || t.strategy || ""; })
            .filter(function (r, i, all) { return r && all.indexOf(r) === i; });
          markers.push({ time: d, position: side === "buy" ? "belowBar" : "aboveBar",
            shape: side === "buy" ? "arrowUp" : "arrowDown", color: side === "buy" ? UP : DOWN,
            text: (side === "buy" ? "B " : "S ") + rules.join("/") });
        });
      });
      tradeMarkers.setMarkers(markers);
    }

    /* The rule levels: one labelled price line each, moved (not recreated) when a price changes. */
    function setLevels(levels) {
      var wanted = {};
      (levels || []).forEach(function (l) {
        if (l.price == null || !(l.price > 0)) return;
        wanted[l.key] = true;
        if (lines[l.key]) {
          if (lines[l.key].options().price !== l.price) lines[l.key].applyOptions({ price: l.price });
        } else {
          lines[l.key] = candles.createPriceLine({ price: l.price, color: l.color, lineWidth: 1,
            lineStyle: l.key === "cost" ? LW.LineStyle.Solid : LW.LineStyle.Dashed, axisLabelVisible: true,
            title: l.label });
        }
      });
      Object.keys(lines).forEach(function (key) {
        if (!wanted[key]) { candles.removePriceLine(lines[key]); delete lines[key]; }
      });
    }

    /* Today's bar follows the live price (a partial bar is added when the history has none for today). */
    function updateToday(price, today) {
      if (!(price > 0) || !model.bars.length) return;
      var last = model.bars[model.bars.length - 1];
      if (day(last.date) !== today) {
        if (day(last.date) > today) return;
        last = { date: today, open: price, high: price, low: price, close: price, volume: 0, partial: true };
        model.bars.push(last);
        model.byDay[today] = model.bars.length - 1;
      } else if (!last.partial) {
        return;  // today's bar is complete (stored after the close)
      }
      last.close = price;
      last.high = Math.max(last.high, price);
      last.low = Math.min(last.low, price);
      candles.update(candle(last));
    }

    var api = {
      setData: setData, setLevels: setLevels, updateToday: updateToday, chart: chart,
      code: function () { return model.code; },
      crosses: function () { return model.crosses.slice(); },
      lastBar: function () { return model.bars[model.bars.length - 1] || null; },
      levelPrices: function () {
        var out = {};
        Object.keys(lines).forEach(function (k) { out[k] = lines[k].options().price; });
        return out;
      },
      visibleRange: function () { return chart.timeScale().getVisibleLogicalRange(); },
      remove: function () { chart.remove(); }
    };
    window.QmtChart.current = api;
    return api;
  }

  // ---- intraday (分时) --------------------------------------------------------------------------------
  function minuteTime(text) {  // market time shown as it is: encoded as UTC seconds
    var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(text);
    return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) / 1000;
  }

  function intraday(box, header) {
    while (box.firstChild) box.removeChild(box.firstChild);
    var options = baseOptions(box);
    options.timeScale = { borderColor: "#dfe3ea", timeVisible: true, secondsVisible: false };
    options.localization = { locale: "zh-CN", timeFormatter: function (t) {
      var d = new Date(t * 1000);
      return String(d.getUTCHours()).padStart(2, "0") + ":" + String(d.getUTCMinutes()).padStart(2, "0");
    } };
    var chart = LW.createChart(box, options);
    var model = { prevClose: null, points: [], digits: 2, code: "", date: "", limits: [] };
    /* Symmetric around the previous close, wide enough for the price and the limit-up / limit-down lines
       (a price line outside the range would not be drawn at all). */
    var price = chart.addSeries(LW.LineSeries, { color: "#2463d1", lineWidth: 2, priceLineVisible: true,
      autoscaleInfoProvider: function (original) {
        var range = original();
        if (!range || !model.prevClose) return range;
        var span = Math.max(Math.abs(range.priceRange.maxValue - model.prevClose),
          Math.abs(range.priceRange.minValue - model.prevClose), model.prevClose * 0.005);
        model.limits.forEach(function (limit) { span = Math.max(span, Math.abs(limit - model.prevClose) / 1.1 * 1.02); });
        return { priceRange: { minValue: model.prevClose - span * 1.1, maxValue: model.prevClose + span * 1.1 } };
      } });
    var average = chart.addSeries(LW.LineSeries, { color: "#e6a118", lineWidth: 1, priceLineVisible: false,
      lastValueVisible: false, crosshairMarkerVisible: false });
    var lines = {};

    function level(key, value, title, color, style) {
      if (!(value > 0)) return;
      if (lines[key]) lines[key].applyOptions({ price: value });
      else lines[key] = price.createPriceLine({ price: value, color: color, lineWidth: 1, lineStyle: style,
        axisLabelVisible: true, title: title });
    }

    function setData(series, digits) {
      model.code = series.stock_code;
      model.digits = digits || 2;
      model.prevClose = series.prev_close;
      model.date = series.date;
      model.points = series.points.slice();
      model.limits = [series.limit_up, series.limit_down].filter(function (v) { return v > 0; });
      price.applyOptions({ priceFormat: { type: "price", precision: model.digits,
        minMove: model.digits === 3 ? 0.001 : 0.01 } });
      price.setData(model.points.map(function (p) { return { time: minuteTime(p.time), value: p.price }; }));
      average.setData(model.points.map(function (p) { return { time: minuteTime(p.time), value: p.avg_price }; }));
      level("prev", series.prev_close, "昨收", MUTED, LW.LineStyle.Dashed);
      level("up", series.limit_up, "涨停", UP, LW.LineStyle.Dotted);
      level("down", series.limit_down, "跌停", DOWN, LW.LineStyle.Dotted);
      chart.timeScale().fitContent();
      if (header) {
        var last = model.points[model.points.length - 1];
        var change = last && series.prev_close ? (last.price / series.prev_close - 1) * 100 : null;
        header.textContent = series.date + " 分时  现价 " + fmt(last && last.price, model.digits) + "  涨跌 " +
          (change == null ? "--" : (change > 0 ? "+" : "") + change.toFixed(2) + "%") + "  昨收 " +
          fmt(series.prev_close, model.digits) + "  涨停 " + fmt(series.limit_up, model.digits) + "  跌停 " +
          fmt(series.limit_down, model.digits) + "  （" + model.points.length + " 个分钟点）";
      }
    }

    var api = {
      setData: setData, chart: chart,
      pointCount: function () { return model.points.length; },
      date: function () { return model.date; },
      lastPrice: function () { var p = model.points[model.points.length - 1]; return p ? p.price : null; },
      visiblePriceRange: function () { return price.priceScale().getVisibleRange(); },
      levelPrices: function () {
        var out = {};
        Object.keys(lines).forEach(function (k) { out[k] = lines[k].options().price; });
        return out;
      },
      remove: function () { chart.remove(); }
    };
    window.QmtChart.currentIntraday = api;
    return api;
  }

  window.QmtChart = { kline: kline, intraday: intraday, current: null, currentIntraday: null };
})();
