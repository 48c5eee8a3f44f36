//! OTLP/HTTP JSON (`ExportTraceServiceRequest`, as `opentelemetry-otlp`'s `http-json` sends it)
//! read into the few things a stage breakdown needs of each span. Pure: bytes in, spans out.
//!
//! The protobuf JSON mapping is followed as the OpenTelemetry SDKs write it: ids as hex strings,
//! nanosecond timestamps as decimal strings (numbers are accepted too), attribute values as
//! `{"stringValue": ...}`, `{"intValue": "3"}` and so on. Unknown fields are ignored.

use serde::{Deserialize, Deserializer};

/// One span, as the stage breakdown reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The resource's `service.name` (`icon-gateway`, `icon-checkout-worker`, ...).
    pub service: String,
    /// Unix nanoseconds, the exporting host's wall clock.
    pub start_ns: u64,
    pub end_ns: u64,
    /// The `checkout_id` attribute, when the span has one (and it is not empty).
    pub checkout_id: Option<String>,
    /// The `queue` attribute of a consumer's `message` span.
    pub queue: Option<String>,
    /// The `count` attribute of a batched statement (`store.claim_first_attempts`, ...).
    pub count: Option<i64>,
}

impl Span {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
#[error("not an OTLP/HTTP JSON trace export: {0}")]
pub struct ParseError(#[from] serde_json::Error);

/// Every span of one `POST /v1/traces` body.
pub fn parse(body: &[u8]) -> Result<Vec<Span>, ParseError> {
    let request: ExportRequest = serde_json::from_slice(body)?;
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .attributes
            .iter()
            .find(|a| a.key == "service.name")
            .and_then(|a| a.value.as_text())
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for s in scope.spans {
                let text = |key: &str| {
                    s.attributes
                        .iter()
                        .find(|a| a.key == key)
                        .and_then(|a| a.value.as_text())
                        .filter(|v| !v.is_empty())
                };
                out.push(Span {
                    checkout_id: text("checkout_id"),
                    queue: text("queue"),
                    count: s
                        .attributes
                        .iter()
                        .find(|a| a.key == "count")
                        .and_then(|a| a.value.as_int()),
                    trace_id: s.trace_id.to_ascii_lowercase(),
                    span_id: s.span_id.to_ascii_lowercase(),
                    parent_span_id: s.parent_span_id.to_ascii_lowercase(),
                    name: s.name,
                    service: service.clone(),
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                });
            }
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest {
    #[serde(default)]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans {
    #[serde(default)]
    resource: Resource,
    #[serde(default)]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize, Default)]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    spans: Vec<RawSpan>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpan {
    trace_id: String,
    span_id: String,
    #[serde(default)]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(deserialize_with = "nanos")]
    start_time_unix_nano: u64,
    #[serde(deserialize_with = "nanos")]
    end_time_unix_nano: u64,
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: AnyValue,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AnyValue {
    string_value: Option<String>,
    /// A 64-bit integer: a string in the JSON mapping, though some writers send a number.
    int_value: Option<serde_json::Value>,
}

impl AnyValue {
    fn as_text(&self) -> Option<String> {
        self.string_value.clone()
    }

    /// An integer, or a string holding one: `tracing-opentelemetry` exports a `usize` field
    /// (such as `count = items.len()`) as a string.
    fn as_int(&self) -> Option<i64> {
        match &self.int_value {
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(_) => None,
            None => self.string_value.as_deref()?.parse().ok(),
        }
    }
}

/// A `fixed64` timestamp: a decimal string in the JSON mapping, or a plain number.
fn nanos<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Nanos {
        Text(String),
        Number(u64),
    }
    match Nanos::deserialize(d)? {
        Nanos::Number(n) => Ok(n),
        Nanos::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping's corners: times as strings and as numbers, an int attribute as a string,
    /// upper-case hex, an empty `checkout_id`, a span without a parent, several resources.
    #[test]
    fn reads_ids_times_service_and_attributes() {
        let body = br#"{"resourceSpans":[
          {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"icon-notifier"}}]},
           "scopeSpans":[{"scope":{"name":"icon-notifier"},"spans":[
             {"traceId":"0AF7651916CD43DD8448EB211C80319C","spanId":"B7AD6B7169203331","parentSpanId":"",
              "name":"store.claim_first_attempts","kind":1,
              "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000002500000,
              "attributes":[{"key":"count","value":{"intValue":"3"}},
                            {"key":"checkout_id","value":{"stringValue":""}}]}]}]},
          {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"icon-gateway"}}]},
           "scopeSpans":[{"spans":[
             {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7","parentSpanId":"b7ad6b7169203331",
              "name":"message","startTimeUnixNano":"5","endTimeUnixNano":"9",
              "attributes":[{"key":"queue","value":{"stringValue":"checkout.finished"}},
                            {"key":"checkout_id","value":{"stringValue":"c-1"}},
                            {"key":"redelivered","value":{"boolValue":false}}]}]}]}
        ]}"#;
        let spans = parse(body).unwrap();
        assert_eq!(spans.len(), 2);
        let claim = &spans[0];
        assert_eq!(claim.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(claim.span_id, "b7ad6b7169203331");
        assert_eq!(claim.parent_span_id, "");
        assert_eq!(claim.service, "icon-notifier");
        assert_eq!(claim.start_ns, 1_700_000_000_000_000_000);
        assert_eq!(claim.duration_ns(), 2_500_000);
        assert_eq!(claim.count, Some(3));
        assert_eq!(claim.checkout_id, None);
        let message = &spans[1];
        assert_eq!(message.service, "icon-gateway");
        assert_eq!(message.parent_span_id, "b7ad6b7169203331");
        assert_eq!(message.queue.as_deref(), Some("checkout.finished"));
        assert_eq!(message.checkout_id.as_deref(), Some("c-1"));
        assert_eq!((message.start_ns, message.end_ns), (5, 9));
    }

    /// A real export (one checkout's trace through the three services, and three batched
    /// statements in traces of their own), as ICON sent it, trimmed of events and code
    /// locations.
    #[test]
    fn reads_a_real_export() {
        let spans = parse(include_bytes!("testdata/one_checkout.json")).unwrap();
        assert_eq!(spans.len(), 12);
        let per_service = |svc: &str| spans.iter().filter(|s| s.service == svc).count();
        assert_eq!(per_service("icon-gateway"), 3);
        assert_eq!(per_service("icon-checkout-worker"), 5);
        assert_eq!(per_service("icon-notifier"), 4);
        let batch = spans
            .iter()
            .find(|s| s.name == "store.create_checkouts")
            .unwrap();
        // `count` arrives as a string value.
        assert_eq!(batch.count, Some(1));
        assert_eq!(batch.parent_span_id, "");
        assert_eq!(batch.duration_ns(), 2_039_794);
        let worker = spans
            .iter()
            .find(|s| s.name == "message" && s.service == "icon-checkout-worker")
            .unwrap();
        assert_eq!(worker.trace_id, "b1dd716da9877b3a5c74e14842efd9f3");
        assert_eq!(worker.queue.as_deref(), Some("checkout.requested"));
        assert_eq!(
            worker.checkout_id.as_deref(),
            Some("01a2426c-02e8-70c7-8974-2996aaa686a1")
        );
        // Its parent is the gateway's handler span, across the broker.
        assert_eq!(worker.parent_span_id, "ef4dea752a66b25b");
        assert_eq!(worker.start_ns, 1_796_410_704_620_666_212);
    }

    #[test]
    fn an_empty_export_is_no_spans_and_garbage_is_an_error() {
        assert!(parse(b"{}").unwrap().is_empty());
        assert!(parse(br#"{"resourceSpans":[]}"#).unwrap().is_empty());
        assert!(parse(b"\x0a\x12protobuf").is_err());
        // A span without its times is not a span this reader can place.
        assert!(parse(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"a","spanId":"b"}]}]}]}"#
        )
        .is_err());
    }
}
