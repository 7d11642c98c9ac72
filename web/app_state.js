/* The main page's shared namespace, window.QmtApp: the page state every part reads (the last positions snapshot,
   the last /api/status answer, the open tab, the charted code, today's date, the chart mode). Each part of the
   page (status.js, positions.js, …) adds the functions the others call; app.js wires them. Loaded before them. */
(function () {
  "use strict";

  window.QmtApp = {
    state: { snapshot: null, status: null, tab: "overview", chartCode: "", today: "", chartMode: "k" }
  };
})();
