// Starts the vendored Swagger UI on this server's own OpenAPI document (an external file: the CSP
// forbids inline scripts). "Try it out" requests need the token: use the Authorize button.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: false,
    validatorUrl: null, // never send the document to a public validator
    presets: [SwaggerUIBundle.presets.apis],
  });
});
