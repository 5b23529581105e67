// Moved from profiles/profile_list.html (the CSP allows no inline script).
// A filter row whose field changes starts over: its operator and value belonged to the old field.
// (Capture phase: this runs before htmx reads the form for the request the change triggers.)
document.addEventListener("change", function (e) {
  var select = e.target;
  if (!select.matches || !select.matches("#profile-filters select[id^='f']")) return;
  var row = select.closest("[data-filter-row]");
  row.querySelectorAll("[id^='op'], [id^='v']").forEach(function (el) {
    if (el.tagName === "SELECT") el.selectedIndex = -1; else el.value = "";
  });
}, true);
