// Moved from history/_type_form_script.html (the CSP allows no inline script).
// Enhancements of the event type form (the name following the label is profiles/_field_name_script.html,
// included beside this); without JavaScript it keeps its blank rows, "Remove"
// checkboxes and the allowed-values input on every row.
(function () {
  var form = document.querySelector("form[data-type-form]");
  if (!form) return;
  var editor = form.querySelector("[data-formset]");
  var rows = editor.querySelector("[data-rows]");
  var template = editor.querySelector("template[data-row-template]");
  var total = editor.querySelector("input[name$='-TOTAL_FORMS']");
  var add = editor.querySelector("[data-add-row]");
  var max = parseInt(editor.getAttribute("data-max"), 10) || 100;

  // "One of a list" needs its values; other types hide the input (kept when it shows an error).
  function syncChoices(row) {
    var type = row.querySelector("select[name$='-type']"), choices = row.querySelector("[data-choices]");
    if (!type || !choices) return;
    choices.hidden = type.value !== "enum" && !choices.querySelector(".is-invalid");
  }
  function visibleRows() { return rows.querySelectorAll("[data-row]:not(.d-none)").length; }
  function syncAdd() { add.disabled = parseInt(total.value, 10) >= max; }
  function enhance(row) {
    var fallback = row.querySelector("[data-remove-fallback]");
    if (fallback) fallback.hidden = true;
    var remove = row.querySelector("[data-remove-row]");
    if (remove) remove.hidden = false;
    syncChoices(row);
  }

  rows.querySelectorAll("[data-row]").forEach(enhance);
  add.hidden = false;
  syncAdd();

  add.addEventListener("click", function () {
    var index = parseInt(total.value, 10);
    var holder = document.createElement("div");
    holder.innerHTML = template.innerHTML.replace(/__prefix__/g, String(index));
    var row = holder.querySelector("[data-row]");
    rows.appendChild(row);
    total.value = String(index + 1);
    enhance(row);
    syncAdd();
    row.querySelector("input[name$='-name']").focus();
  });
  editor.addEventListener("click", function (e) {
    var btn = e.target.closest("[data-remove-row]");
    if (!btn) return;
    var row = btn.closest("[data-row]");
    row.querySelector("input[data-remove]").checked = true;  // the server leaves it out
    row.classList.add("d-none");
    if (!visibleRows()) add.focus();
  });
  editor.addEventListener("change", function (e) {
    if (e.target.matches("select[name$='-type']")) syncChoices(e.target.closest("[data-row]"));
  });
})();
