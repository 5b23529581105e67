// Small enhancements; every page works without them.
(function () {
  "use strict";
  function ready(fn) { if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn); }

  function autohideToasts(root) {
    root.querySelectorAll('.toast[data-autohide="true"]').forEach(function (el) {
      if (el.dataset.bound) return;
      el.dataset.bound = "1";
      setTimeout(function () { el.classList.remove("show"); el.remove(); }, 6000);
    });
  }

  ready(function () {
    autohideToasts(document);
    document.querySelectorAll("[data-toggle-sidebar]").forEach(function (btn) {
      btn.addEventListener("click", function () { document.getElementById("sidebar").classList.toggle("open"); });
    });
    // Close open <details class="menu"> on a click elsewhere or Escape.
    document.addEventListener("click", function (e) {
      document.querySelectorAll("details.menu[open]").forEach(function (d) { if (!d.contains(e.target)) d.removeAttribute("open"); });
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape") document.querySelectorAll("details.menu[open]").forEach(function (d) { d.removeAttribute("open"); });
    });
    // <form data-confirm="Really?"> asks before submitting.
    document.addEventListener("submit", function (e) {
      var msg = e.target.getAttribute("data-confirm");
      if (msg && !window.confirm(msg)) { e.preventDefault(); e.stopPropagation(); }
    }, true);
    // <select data-autosubmit> submits its form on change (a Save button stands in without JS).
    document.addEventListener("change", function (e) {
      if (e.target.matches("select[data-autosubmit]") && e.target.form) e.target.form.requestSubmit();
    });
    // Copy buttons: <button data-copy="#element-id">
    document.addEventListener("click", function (e) {
      var btn = e.target.closest("[data-copy]");
      if (!btn) return;
      var el = document.querySelector(btn.getAttribute("data-copy"));
      if (!el) return;
      var text = el.textContent.trim();
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () { btn.innerHTML = '<i class="bi bi-check2"></i> Copied'; });
      } else {
        var r = document.createRange(); r.selectNodeContents(el);
        var s = window.getSelection(); s.removeAllRanges(); s.addRange(r);
      }
    });
  });
  document.addEventListener("htmx:afterSwap", function (e) { autohideToasts(e.target); });
  // An htmx request that failed (htmx swaps nothing on 4xx/5xx): say so in a toast. A short
  // text/plain answer (an expired form's CSRF message, say) is shown as it is.
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr, box = document.getElementById("toasts");
    if (!box || !xhr) return;
    var type = xhr.getResponseHeader("Content-Type") || "", text = "";
    if (type.indexOf("text/plain") === 0 && xhr.responseText.length < 600) text = xhr.responseText;
    if (!text) text = xhr.status >= 500 ? "Something went wrong on our side (" + xhr.status + "). Try again in a moment."
      : "The request was refused (" + xhr.status + "). Reload the page and try again.";
    var toast = document.createElement("div");
    toast.className = "toast show align-items-center border-0 text-bg-danger";
    toast.setAttribute("role", "alert");
    toast.setAttribute("data-autohide", "true");
    var row = document.createElement("div"); row.className = "d-flex";
    var body = document.createElement("div"); body.className = "toast-body"; body.textContent = text;
    row.appendChild(body); toast.appendChild(row); box.appendChild(toast);
    autohideToasts(box);
  });
  // <div hx-trigger="every 5s" data-poll-visible>: skip the poll while the tab is hidden. (Not an
  // hx-trigger "[filter]": htmx evaluates those with Function(), which the CSP forbids.)
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (document.visibilityState !== "visible" && e.detail.elt.hasAttribute("data-poll-visible")) e.preventDefault();
  });
  // <a href="/" data-history-back>: back in history when there is one (no javascript: URL under the CSP).
  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("a[data-history-back]");
    if (link && window.history.length > 1) { e.preventDefault(); window.history.back(); }
  });
})();
// Table filters: leave empty fields out of htmx GETs, so pushed URLs stay clean (?q=x, not ?q=x&role=).
document.addEventListener("htmx:configRequest", function (e) {
  if (e.detail.verb !== "get") return;
  var params = e.detail.parameters;
  var keys = params instanceof FormData ? Array.from(params.keys()) : Object.keys(params);
  keys.forEach(function (k) {
    var v = params instanceof FormData ? params.get(k) : params[k];
    if (v === "" || v === null) { if (params instanceof FormData) params.delete(k); else delete params[k]; }
  });
});
