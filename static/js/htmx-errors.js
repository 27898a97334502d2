// A 4xx/5xx answer is swapped into a target marked data-swap-errors, so a form can show the server's
// explanation (e.g. which import line is wrong) in place. This lives here rather than in an hx-on
// attribute because the Content-Security-Policy allows no eval, which hx-on needs.
document.addEventListener("htmx:beforeSwap", function (e) {
  var target = e.detail.target;
  if (e.detail.xhr.status >= 400 && target && target.closest("[data-swap-errors]")) {
    e.detail.shouldSwap = true;
    e.detail.isError = false;
  }
});
