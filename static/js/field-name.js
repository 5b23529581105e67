// Moved from profiles/_field_name_script.html (the CSP allows no inline script).
// Enhancements only: the name follows the label until someone edits it (fields here, event types
// in history, whose name input says its own length in data-slug-max), and "Allowed values" shows
// only for "One of a list". Without JavaScript every input simply stays visible.
(function () {
  document.querySelectorAll("form[data-field-form], form[data-type-form]").forEach(function (form) {
    var label = form.querySelector("[name=label]"), name = form.querySelector("[name=name]");
    var type = form.querySelector("[name=type]"), choices = form.querySelector("[data-choices]");
    if (label && name) {
      var touched = name.value !== "";
      var follow = function () {
        if (touched) return;
        name.value = label.value.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
          .replace(/[^a-z0-9]+/g, "_").replace(/^[^a-z]+/, "").replace(/_+$/, "").slice(0, parseInt(name.getAttribute("data-slug-max"), 10) || 64);
      };
      name.addEventListener("input", function () { touched = name.value !== ""; });
      label.addEventListener("input", follow);
      // A label typed before this deferred script ran (a fast typist, a slow page, a restored form)
      // had no listener to follow it: catch up once, as if it had been typed now.
      if (label.value !== "") follow();
    }
    if (type && choices) {
      var sync = function () { choices.hidden = type.value !== "enum" && !choices.querySelector(".is-invalid"); };
      type.addEventListener("change", sync);
      sync();
    }
  });
})();
