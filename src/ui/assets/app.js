// mailwarden console: the one script of our own. No inline handlers anywhere (the
// Content-Security-Policy forbids them): behaviour hangs off data- attributes.
"use strict";

(function () {
  // Says `message` to screen readers through the page's live region.
  function announce(message) {
    const region = document.getElementById("announce");
    if (region) {
      region.textContent = "";
      window.setTimeout(function () { region.textContent = message; }, 50);
    }
  }

  // <button data-copy="text">: copies the text and says so.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) { return; }
    event.preventDefault();
    const text = button.getAttribute("data-copy");
    navigator.clipboard.writeText(text).then(
      function () { announce("Copied " + text); button.textContent = "Copied"; },
      function () { announce("Copying is not allowed here; select the text instead"); }
    );
  });

  // <form data-confirm="question">: asks before it is sent (htmx forms use hx-confirm).
  document.addEventListener("submit", function (event) {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  // After htmx swaps in new content, read out its [data-announce] text, if any.
  document.addEventListener("htmx:afterSwap", function (event) {
    const said = event.target.querySelector ? event.target.querySelector("[data-announce]") : null;
    if (said) { announce(said.getAttribute("data-announce")); }
  });
})();
