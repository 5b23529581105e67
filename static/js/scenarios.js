// The scenario editor's two conveniences; everything works without them.
(function () {
  "use strict";
  var scroll = null;
  // Keep the diagram where the person was looking when htmx redraws the editor after an edit.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var box = document.querySelector(".s-scroll");
    if (box && e.detail.target && e.detail.target.id === "editor") scroll = [box.scrollLeft, box.scrollTop];
  });
  document.addEventListener("htmx:afterSwap", function () {
    var box = document.querySelector(".s-scroll");
    if (box && scroll) { box.scrollLeft = scroll[0]; box.scrollTop = scroll[1]; scroll = null; }
    // Outline the card whose form the side panel shows (the panel is swapped without the diagram).
    var panel = document.getElementById("side-panel");
    if (!panel) return;
    var key = panel.getAttribute("data-step") || "";
    document.querySelectorAll(".s-node").forEach(function (node) {
      node.classList.toggle("s-selected", key !== "" && node.getAttribute("data-step") === key);
    });
  });
})();
