// Segment pages: the size-over-time chart, a reload once a recalculation the page watched has
// finished (its progress bar is the shared job partial, which polls by itself), and the label of
// the builder's status menus. Everything else on these pages is htmx or plain forms.
(function () {
  "use strict";
  function ready(fn) { if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn); }

  function drawChart() {
    var el = document.getElementById("segment-size-chart");
    var data = document.getElementById("segment-size-data");
    if (!el || !data || !window.Chart) return;
    var d = JSON.parse(data.textContent);
    new window.Chart(el, {
      type: "line",
      data: { labels: d.labels, datasets: [{ label: "Profiles", data: d.values, borderColor: "#4f46e5", backgroundColor: "rgba(79, 70, 229, .12)", fill: true, tension: .25, pointRadius: d.values.length > 30 ? 0 : 3 }] },
      options: {
        maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 }, grid: { color: "#eef0f4" } }, x: { grid: { display: false }, ticks: { maxTicksLimit: 8 } } }
      }
    });
  }

  ready(drawChart);
  // The builder: a subscription's status menu names what is ticked (the server does so on each render).
  document.addEventListener("change", function (e) {
    var menu = e.target.closest && e.target.closest(".status-menu");
    if (!menu) return;
    var names = Array.from(menu.querySelectorAll("input:checked")).map(function (box) {
      return menu.querySelector("label[for='" + box.id + "']").textContent.trim().toLowerCase();
    });
    menu.querySelector("summary").textContent = names.join(", ") || "subscribed";
  });
  // The job partial swaps itself every 2 s; when a recalculation it showed running has succeeded,
  // the page's numbers, chart and members are stale: load them again (without ?job=).
  document.addEventListener("htmx:afterSettle", function () {
    var box = document.querySelector("[data-segment-job*='recalc']");
    if (!box || box.dataset.reloading) return;
    if (box.querySelector(".job-progress[data-state='succeeded']")) {
      box.dataset.reloading = "1";
      window.location.assign(window.location.pathname);
    }
  });
})();
