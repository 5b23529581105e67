(function () {
  "use strict";
  function draw() {
    var el = document.getElementById("activity-chart");
    var data = document.getElementById("activity-data");
    if (!el || !data || !window.Chart) return;
    var d = JSON.parse(data.textContent);
    new window.Chart(el, {
      type: "bar",
      data: { labels: d.labels, datasets: [{ label: "Actions", data: d.values, backgroundColor: "rgba(99, 102, 241, .75)", borderRadius: 6, maxBarThickness: 28 }] },
      options: {
        maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 }, grid: { color: "#eef0f4" } }, x: { grid: { display: false } } }
      }
    });
  }
  if (document.readyState !== "loading") draw(); else document.addEventListener("DOMContentLoaded", draw);
})();
