// Copy buttons of the spconnect admin: <button data-copy-target="input-id">.
(function () {
  "use strict";
  function copied(button) {
    var label = button.textContent;
    button.textContent = "Copied";
    window.setTimeout(function () { button.textContent = label; }, 1500);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy-target]") : null;
    if (!button) { return; }
    event.preventDefault();
    var input = document.getElementById(button.getAttribute("data-copy-target"));
    if (!input) { return; }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { copied(button); });
    } else {
      input.select();
      document.execCommand("copy");
      copied(button);
    }
  });
})();
