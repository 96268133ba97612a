// syncd console: the little the pages need, no inline script (the CSP forbids it).
// - [data-refresh-seconds] on <body> or any element: reload the page after that many seconds.
// - <div class="chart" data-chart="ID">: draw the ECharts option held as JSON in
//   <script type="application/json" id="ID"> (pages that have charts load echarts.min.js).
(function () {
  "use strict";
  var refresh = document.querySelector("[data-refresh-seconds]");
  if (refresh) {
    var seconds = parseFloat(refresh.getAttribute("data-refresh-seconds"));
    if (seconds > 0) { window.setTimeout(function () { window.location.reload(); }, seconds * 1000); }
  }
  if (window.echarts) {
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-chart"));
      if (!source) { return; }
      var chart = window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(JSON.parse(source.textContent));
      el.setAttribute("data-chart-ready", "1");
      window.addEventListener("resize", function () { chart.resize(); });
    });
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
})();
