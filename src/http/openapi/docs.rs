//! `GET /docs`: the OpenAPI document rendered as one self-contained HTML
//! page (no script, no stylesheet or font fetched from anywhere), so the
//! API can be read in a browser on a machine with no network.
//!
//! Rendered from the document's JSON form: every operation with its
//! method, path, summary, auth, parameters, request body and responses,
//! then every schema with its properties.

use std::fmt::Write as _;

use serde_json::Value;
use utoipa::openapi::OpenApi;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
h2{border-bottom:1px solid #ccc;margin-top:2.5rem}section.op{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}\
.method{display:inline-block;min-width:4.5rem;font-weight:bold;text-transform:uppercase}.path{font-family:monospace;font-size:1.05rem}\
table{border-collapse:collapse;margin:.3rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}\
code{background:#f4f4f4;padding:0 .2rem}.auth{color:#666;font-size:.9rem}";

/// The page for `doc`.
pub fn render(doc: &OpenApi) -> String {
    let doc = serde_json::to_value(doc).unwrap_or(Value::Null);
    let mut out = String::new();
    let title = text(&doc["info"]["title"]);
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} API</title>\
         <style>{STYLE}</style></head><body><h1>{title} API</h1><p>{}</p>\
         <p>Machine-readable: <a href=\"/openapi.json\"><code>/openapi.json</code></a> (OpenAPI {}).</p>",
        escape(&text(&doc["info"]["description"])),
        escape(&text(&doc["openapi"])),
    );
    out.push_str("<h2>Operations</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, operation) in item {
                operation_html(&mut out, path, method, operation);
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = write!(
                out,
                "<section id=\"schema-{name}\"><h3>{name}</h3><p>{}</p>",
                escape(&text(&schema["description"])),
                name = escape(name),
            );
            properties_html(&mut out, schema);
            out.push_str("</section>");
        }
    }
    out.push_str("</body></html>");
    out
}

fn operation_html(out: &mut String, path: &str, method: &str, operation: &Value) {
    let auth = if operation["security"].as_array().is_some_and(|schemes| {
        schemes
            .iter()
            .any(|s| s.as_object().is_some_and(|s| !s.is_empty()))
    }) {
        let optional = operation["security"].as_array().is_some_and(|schemes| {
            schemes
                .iter()
                .any(|s| s.as_object().is_some_and(|s| s.is_empty()))
        });
        if optional {
            "bearer token optional"
        } else {
            "bearer token required"
        }
    } else {
        "no auth"
    };
    let _ = write!(
        out,
        "<section class=\"op\"><div><span class=\"method\">{}</span> <span class=\"path\">{}</span> \
         <span class=\"auth\">({auth})</span></div><p><b>{}</b></p><p>{}</p>",
        escape(method),
        escape(path),
        escape(&text(&operation["summary"])),
        escape(&text(&operation["description"])),
    );
    if let Some(parameters) = operation["parameters"].as_array() {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>");
        for parameter in parameters {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&text(&parameter["name"])),
                escape(&text(&parameter["in"])),
                schema_name(&parameter["schema"]),
                parameter["required"].as_bool().unwrap_or(false),
                escape(&text(&parameter["description"])),
            );
        }
        out.push_str("</table>");
    }
    if let Some(content) = operation["requestBody"]["content"].as_object() {
        for (media, body) in content {
            let _ = write!(
                out,
                "<p>Request body (<code>{}</code>): {}</p>",
                escape(media),
                schema_name(&body["schema"])
            );
        }
    }
    if let Some(responses) = operation["responses"].as_object() {
        out.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
        for (status, response) in responses {
            let bodies: Vec<String> = response["content"]
                .as_object()
                .map(|content| {
                    content
                        .iter()
                        .map(|(media, body)| {
                            format!(
                                "{} <code>{}</code>",
                                schema_name(&body["schema"]),
                                escape(media)
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(status),
                escape(&text(&response["description"])),
                bodies.join("<br>"),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn properties_html(out: &mut String, schema: &Value) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str(
        "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>",
    );
    for (name, property) in properties {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            schema_name(property),
            required.contains(&name.as_str()),
            escape(&text(&property["description"])),
        );
    }
    out.push_str("</table>");
}

/// A short, linked name for a schema: the referenced component, `array of
/// …`, or the type with its format.
fn schema_name(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{0}\">{0}</a>", escape(name));
    }
    if let Some(choices) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
        let names: Vec<String> = choices.iter().map(schema_name).collect();
        return names.join(" | ");
    }
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.iter().map(text).collect::<Vec<_>>().join(" | "),
        Value::Null => "any".to_string(),
        other => text(other),
    };
    if kind.starts_with("array") {
        return format!("array of {}", schema_name(&schema["items"]));
    }
    let mut name = escape(&kind);
    if let Some(format) = schema["format"].as_str() {
        let _ = write!(name, " ({})", escape(format));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        let _ = write!(name, " matching <code>{}</code>", escape(pattern));
    }
    if let Some(minimum) = schema["minimum"].as_i64() {
        let _ = write!(name, " ≥ {minimum}");
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| escape(&v.to_string())).collect();
        let _ = write!(name, ": {}", values.join(", "));
    }
    name
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn every_operation_and_schema_is_on_the_page() {
        let page = render(&super::super::document());
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("/workspaces/{id}/delegate"));
        assert!(page.contains("id=\"schema-ErrorBody\""));
    }
}
