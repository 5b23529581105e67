// Mailing pages: the report's chart, the content step's preview frame following the chosen
// template, and a reload of the mailing page once its progress partial says the run finished
// (the state badge and buttons change). Everything else is htmx or plain forms.
(function () {
  "use strict";
  function ready(fn) { if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn); }

  function drawReport() {
    var el = document.getElementById("mailing-report-chart");
    var data = document.getElementById("mailing-report-data");
    if (!el || !data || !window.Chart || el.dataset.drawn) return;
    el.dataset.drawn = "1";
    var d = JSON.parse(data.textContent);
    function set(label, values, color) {
      return { label: label, data: values, borderColor: color, backgroundColor: bars ? color : color + "22", fill: false, tension: .25,
               pointRadius: values.length > 48 ? 0 : 3, maxBarThickness: 36, borderRadius: 3 };
    }
    // A few hours of data read better as bars than as lines through three dots.
    var bars = d.labels.length < 4;
    new window.Chart(el, {
      type: bars ? "bar" : "line",
      data: { labels: d.labels, datasets: [set("Sent", d.sent, "#4f46e5"), set("Opened", d.opened, "#10b981"), set("Clicked", d.clicked, "#f59e0b")] },
      options: {
        maintainAspectRatio: false, animation: false, interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 }, grid: { color: "#eef0f4" } }, x: { grid: { display: false }, ticks: { maxTicksLimit: 10 } } }
      }
    });
  }

  // The content step: the sandboxed preview shows the template chosen in the select, before saving.
  document.addEventListener("change", function (e) {
    if (!e.target.matches || !e.target.matches("select[name='template']")) return;
    var frame = document.querySelector("iframe[data-preview-url]");
    if (!frame) return;
    if (!e.target.value) { frame.classList.add("d-none"); return; }
    frame.src = frame.dataset.previewUrl.replace("/0/", "/" + encodeURIComponent(e.target.value) + "/");
    frame.classList.remove("d-none");
  });

  // The progress partial stops polling when its run is finished and says so (HX-Trigger):
  // the mailing's state and actions changed too, so show the page again.
  ready(function () {
    document.body.addEventListener("mailing-finished", function () { window.location.reload(); }, { once: true });
    drawReport();
  });
})();
