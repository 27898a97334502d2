// Starts Swagger UI on /docs with FastAPI's settings. A file, not an inline script: the
// Content-Security-Policy allows scripts only from our own files.
(function () {
  var root = document.getElementById("swagger-ui");
  var csrf = root.getAttribute("data-csrf-token");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    // With a session cookie, state-changing calls need the session's CSRF token (a Bearer token does not).
    requestInterceptor: function (request) {
      if (csrf) { request.headers["X-CSRF-Token"] = csrf; }
      return request;
    },
  });
})();
