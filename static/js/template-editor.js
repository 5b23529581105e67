// The template editor: live preview, checks, SMS counter, variables, preview width and profile.
// Every piece works without it (the buttons post the same form); this only re-submits as you type.
(function () {
  "use strict";

  // --- SMS: the same rules as content/sms.py --------------------------------------------------
  // GSM 03.38 basic set (1 septet each) and the extension table (escape + char: 2 septets).
  var GSM_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM_EXT = "^{}\\[~]|€\f";

  function smsInfo(text) {
    var septets = 0, gsm = true;
    for (var i = 0; i < text.length; i++) {
      var ch = text.charAt(i);
      if (GSM_BASIC.indexOf(ch) !== -1) septets += 1;
      else if (GSM_EXT.indexOf(ch) !== -1) septets += 2;
      else { gsm = false; break; }
    }
    if (gsm) {
      return { encoding: "GSM-7", length: septets, per: septets <= 160 ? 160 : 153,
               segments: septets === 0 ? 0 : septets <= 160 ? 1 : Math.ceil(septets / 153) };
    }
    var units = text.length; // UTF-16 code units, as UCS-2 counts them (an emoji is 2)
    return { encoding: "UCS-2", length: units, per: units <= 70 ? 70 : 67,
             segments: units <= 70 ? 1 : Math.ceil(units / 67) };
  }

  function showSms(box, info) {
    function set(name, value) { var el = box.querySelector('[data-sms="' + name + '"]'); if (el) el.textContent = value; }
    set("encoding", info.encoding);
    set("length", info.length);
    set("segments", info.segments);
    set("segments-word", info.segments === 1 ? "segment" : "segments");
    set("per", info.per);
    box.classList.toggle("sms-many", info.segments > 1);
    box.classList.toggle("sms-ucs2", info.encoding === "UCS-2");
  }

  // Whether any field of the form (but the version note) differs from what the page was served with.
  function edited(form) {
    return Array.prototype.some.call(form.elements, function (el) {
      if (el.name === "note" || el.disabled) return false;
      if (el.tagName === "SELECT") {
        var served = Array.prototype.filter.call(el.options, function (o) { return o.defaultSelected; });
        if (!served.length && !el.multiple && el.options.length) served = [el.options[0]];  // none marked: the first
        return Array.prototype.some.call(el.options, function (o) { return o.selected !== (served.indexOf(o) !== -1); });
      }
      if (el.type === "checkbox" || el.type === "radio") return el.checked !== el.defaultChecked;
      if (el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && el.type !== "hidden")) return el.value !== el.defaultValue;
      return false;
    });
  }

  function ready(fn) { if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn); }

  ready(function () {
    var form = document.getElementById("editor-form");
    if (!form) return;
    var previewButton = form.querySelector("[data-preview-submit]");
    var profileInput = document.getElementById("preview-profile");
    var timer = null;

    function refresh() {
      // The preview: the form posted to the sandboxed frame (the button carries formaction/formtarget).
      if (previewButton) form.requestSubmit(previewButton);
      // The checks: htmx posts the same form to the check endpoint (hx-trigger on #editor-panel).
      if (window.htmx) window.htmx.trigger(document.body, "editor:refresh");
    }
    function later() { clearTimeout(timer); timer = setTimeout(refresh, 400); }

    form.addEventListener("input", function (e) {
      if (e.target.name === "note") return;
      later();
    });
    form.addEventListener("change", function (e) {
      if (e.target.tagName === "SELECT") later();
    });
    // Typed before this script ran (a slow page, a quick typist, a browser restoring the form):
    // the preview and the checks catch up once, as if that typing had come now.
    if (edited(form)) later();

    // The SMS counter follows the text as it is typed (the server's count after rendering comes with the checks).
    var smsText = form.querySelector("[data-sms-text]");
    var smsBox = document.getElementById("sms-counter");
    if (smsText && smsBox) {
      smsText.addEventListener("input", function () { showSms(smsBox, smsInfo(smsText.value)); });
      showSms(smsBox, smsInfo(smsText.value));
    }

    // Variables: insert at the caret of the box last focused (the HTML or text box by default).
    var lastField = form.querySelector("textarea[name$='html'], textarea[name$='text'], textarea[name$='body']");
    form.addEventListener("focusin", function (e) {
      if (e.target.matches("input[type=text], textarea") && e.target.name !== "note" && e.target.name !== "sample_data") lastField = e.target;
    });
    document.addEventListener("click", function (e) {
      var btn = e.target.closest("[data-insert]");
      if (!btn || !lastField || lastField.readOnly) return;
      var text = btn.getAttribute("data-insert");
      var start = lastField.selectionStart || 0, end = lastField.selectionEnd || 0;
      lastField.setRangeText(text, start, end, "end");
      lastField.focus();
      lastField.dispatchEvent(new Event("input", { bubbles: true }));
    });

    // Desktop / phone width.
    document.querySelectorAll("[data-width]").forEach(function (a) {
      a.addEventListener("click", function (e) {
        e.preventDefault();
        var stage = document.getElementById("preview-stage");
        stage.classList.remove("width-desktop", "width-phone");
        stage.classList.add("width-" + a.getAttribute("data-width"));
        document.querySelectorAll("[data-width]").forEach(function (b) {
          var on = b === a;
          b.classList.toggle("active", on);
          b.setAttribute("aria-pressed", on ? "true" : "false");
        });
      });
    });

    // Preview as: a profile from the picker, or the sample person.
    document.addEventListener("click", function (e) {
      var pick = e.target.closest("[data-pick-profile]");
      if (!pick) return;
      e.preventDefault();
      var id = pick.getAttribute("data-pick-profile");
      profileInput.value = id;
      var testProfile = document.getElementById("test-profile");
      if (testProfile) testProfile.value = id;
      document.getElementById("preview-as-label").textContent = pick.getAttribute("data-label");
      document.getElementById("preview-as-reset").classList.toggle("d-none", !id);
      var results = document.getElementById("picker-results");
      if (results) results.innerHTML = "";
      var q = document.getElementById("picker-q");
      if (q) q.value = "";
      refresh();
    });
  });
})();
