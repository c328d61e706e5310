//! The `/docs` page: Swagger UI over `/openapi.json`, its assets vendored from npm's
//! `swagger-ui-dist` and served from the binary (nothing is downloaded).

/// Swagger UI's script.
pub const SWAGGER_JS: &[u8] = include_bytes!("../../vendor/swagger-ui/swagger-ui-bundle.js");
/// Swagger UI's style sheet.
pub const SWAGGER_CSS: &[u8] = include_bytes!("../../vendor/swagger-ui/swagger-ui.css");

/// The `/docs` page: Swagger UI over `/openapi.json`.
pub const DOCS_HTML: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>sslmem API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui" });
  </script>
</body>
</html>
"##;
