//! `/openapi.json` and `/docs`. The docs page renders the OpenAPI document with swagger-ui
//! (`swagger-ui-dist` 5.35.0, vendored under `services/gateway/assets/swagger-ui/`, where its
//! README says how to update it), served from this binary: the reference works offline, and a
//! Content-Security-Policy keeps the page from loading anything from elsewhere.
//!
//! Under the rendered reference, a plain HTML table lists every problem `code`, each with the
//! anchor (`/docs#problem-<code>`) that a problem document's `type` points at.

use crate::problem::CODES;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

const SWAGGER_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");
const SWAGGER_LICENSE: &[u8] = include_bytes!("../../assets/swagger-ui/LICENSE");
const SWAGGER_NOTICE: &[u8] = include_bytes!("../../assets/swagger-ui/NOTICE");

/// Starts swagger-ui on `/openapi.json`. A file rather than an inline script, so the CSP can
/// forbid inline scripts. No validator badge: it would send the document to swagger.io.
const INIT_JS: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#reference",
    deepLinking: true,
    validatorUrl: null,
    defaultModelsExpandDepth: 0,
    displayOperationId: false,
    tryItOutEnabled: false
  });
});
"##;

/// Only this origin; inline styles and data: images because swagger-ui uses them.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub struct Docs {
    pub json: String,
    pub html: String,
}

impl Docs {
    pub fn build() -> Self {
        let json = serde_json::to_string_pretty(&crate::openapi::document())
            .unwrap_or_else(|_| "{}".into());
        Self { json, html: page() }
    }
}

pub async fn openapi_json(docs: web::Data<Docs>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(docs.json.clone())
}

pub async fn docs_page(docs: web::Data<Docs>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(docs.html.clone())
}

/// `/docs/assets/{file}`: the vendored UI and its licence.
pub async fn asset(file: web::Path<String>) -> HttpResponse {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "swagger-ui-bundle.js" => (SWAGGER_JS, "text/javascript; charset=utf-8"),
        "init.js" => (INIT_JS.as_bytes(), "text/javascript; charset=utf-8"),
        "swagger-ui.css" => (SWAGGER_CSS, "text/css; charset=utf-8"),
        "LICENSE" => (SWAGGER_LICENSE, "text/plain; charset=utf-8"),
        "NOTICE" => (SWAGGER_NOTICE, "text/plain; charset=utf-8"),
        _ => {
            use actix_web::ResponseError;
            return crate::problem::ApiError::not_found("not_found", "no such file under /docs")
                .error_response();
        }
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: swagger-ui's mount point, then the problem codes. Nothing in it names an
/// operation: the reference is what the script renders.
fn page() -> String {
    let mut rows = String::new();
    for (code, status, what) in CODES {
        rows.push_str(&format!(
            "<tr id=\"problem-{c}\"><td><code>{c}</code></td><td>{status}</td><td>{}</td></tr>",
            esc(what),
            c = esc(code)
        ));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>ICON API reference</title>\
         <link rel=\"stylesheet\" href=\"/docs/assets/swagger-ui.css\"></head><body>\
         <div id=\"reference\"></div>\
         <section id=\"problems\" class=\"swagger-ui\" style=\"max-width:1460px;margin:0 auto;padding:0 20px 40px\">\
         <h2>Problem codes</h2><p>Every error is <code>application/problem+json</code> (RFC 9457) \
         whose <code>type</code> points here and whose <code>code</code> is stable: branch on it.</p>\
         <table><tr><th>code</th><th>status</th><th>what to do</th></tr>{rows}</table>\
         <p>The machine-readable document: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1). \
         Rendered with swagger-ui (<a href=\"/docs/assets/LICENSE\">Apache-2.0</a>, \
         <a href=\"/docs/assets/NOTICE\">notice</a>).</p></section>\
         <script src=\"/docs/assets/swagger-ui-bundle.js\"></script>\
         <script src=\"/docs/assets/init.js\"></script></body></html>"
    )
}
