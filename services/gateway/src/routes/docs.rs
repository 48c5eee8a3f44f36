//! `/openapi.json` and `/docs`. The docs page is plain HTML rendered from the same OpenAPI
//! document, with no script or stylesheet from anywhere else, so it works offline and behind
//! strict firewalls.

use crate::problem::CODES;
use actix_web::{web, HttpResponse};
use serde_json::Value;

pub struct Docs {
    pub json: String,
    pub html: String,
}

impl Docs {
    pub fn build() -> Self {
        let spec = crate::openapi::spec();
        let json = spec.to_pretty_json().unwrap_or_else(|_| "{}".into());
        let value: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
        Self {
            html: render(&value),
            json,
        }
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
        .body(docs.html.clone())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn render(spec: &Value) -> String {
    let title = spec["info"]["title"].as_str().unwrap_or("ICON API");
    let description = spec["info"]["description"].as_str().unwrap_or("");
    let mut out = String::new();
    out.push_str(&format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}\
         code,pre{{background:#f4f4f4;border-radius:4px}}pre{{padding:.6rem;overflow-x:auto}}\
         .m{{font-weight:bold;text-transform:uppercase;display:inline-block;min-width:4rem}}\
         section{{border-top:1px solid #ddd;padding:.5rem 0}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}}</style></head><body>\
         <h1>{t}</h1><p>{d}</p><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p>\
         <h2>Authentication</h2><p>Every endpoint except the probes and these docs needs \
         <code>Authorization: Bearer &lt;JWT&gt;</code>, HS256-signed with <code>ICON_JWT_SECRET</code>, \
         with <code>sub</code> (the user) and <code>exp</code>; <code>scope</code> containing \
         <code>admin</code> unlocks admin endpoints.</p><h2>Endpoints</h2>",
        t = esc(title),
        d = esc(description)
    ));
    if let Some(paths) = spec["paths"].as_object() {
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                out.push_str(&format!(
                    "<section><h3><span class=\"m\">{}</span> <code>{}</code></h3>",
                    esc(method),
                    esc(path)
                ));
                if let Some(s) = op["summary"].as_str() {
                    out.push_str(&format!("<p><b>{}</b></p>", esc(s)));
                }
                if let Some(s) = op["description"].as_str() {
                    out.push_str(&format!("<p>{}</p>", esc(s)));
                }
                if let Some(r) =
                    op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
                {
                    let name = r.rsplit('/').next().unwrap_or(r);
                    out.push_str(&format!(
                        "<p>Request body: <a href=\"#schema-{n}\"><code>{n}</code></a></p>",
                        n = esc(name)
                    ));
                }
                if let Some(responses) = op["responses"].as_object() {
                    out.push_str("<table><tr><th>Status</th><th>Meaning</th><th>Body</th></tr>");
                    for (status, r) in responses {
                        let body = r["content"]
                            .as_object()
                            .and_then(|c| c.values().next())
                            .and_then(|c| c["schema"]["$ref"].as_str())
                            .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned())
                            .unwrap_or_default();
                        out.push_str(&format!(
                            "<tr><td>{}</td><td>{}</td><td><a href=\"#schema-{b}\">{b}</a></td></tr>",
                            esc(status),
                            esc(r["description"].as_str().unwrap_or("")),
                            b = esc(&body)
                        ));
                    }
                    out.push_str("</table>");
                }
                out.push_str("</section>");
            }
        }
    }
    out.push_str("<h2>Problems</h2><p>Every error is <code>application/problem+json</code> (RFC 9457) with a stable <code>code</code>.</p><table><tr><th>code</th><th>status</th><th>what to do</th></tr>");
    for (code, status, what) in CODES {
        out.push_str(&format!(
            "<tr id=\"problem-{c}\"><td><code>{c}</code></td><td>{status}</td><td>{}</td></tr>",
            esc(what),
            c = esc(code)
        ));
    }
    out.push_str("</table><h2>Schemas</h2>");
    if let Some(schemas) = spec["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            out.push_str(&format!(
                "<section id=\"schema-{n}\"><h3><code>{n}</code></h3><pre>{}</pre></section>",
                esc(&serde_json::to_string_pretty(schema).unwrap_or_default()),
                n = esc(name)
            ));
        }
    }
    out.push_str("</body></html>");
    out
}
