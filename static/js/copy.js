// Copy buttons: <button data-copy="#id"> copies the text of the element it names (a password or token
// shown once) and says so in the [data-copy-status] element beside it. A file, not an inline handler:
// the Content-Security-Policy allows scripts only from our own files.
(function () {
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Served over plain http (not localhost) there is no Clipboard API: the older copy command still works
    // on a selected text field.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var copied = false;
      try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
      area.remove();
      if (copied) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) { return; }
    var status = button.parentElement.querySelector("[data-copy-status]");
    var say = function (text) { if (status) { status.textContent = text; } };
    copyText(source.textContent.trim()).then(
      function () { say("Copied."); },
      function () { selectText(source); say("Selected: press Ctrl+C (⌘C) to copy."); }
    );
  });
})();
