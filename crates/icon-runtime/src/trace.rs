//! W3C trace context (`traceparent`), carried by hand from the incoming request through the
//! outbox, both queues and out to retailers and callbacks, so one checkout is one trace.
//!
//! Propagation is ours, not OpenTelemetry's: it must work (and be tested) whether or not spans
//! are exported, and it crosses the outbox table, which no propagator knows. The context of the
//! work in progress is a task-local ([`scope`]) set by whoever received it (the gateway's
//! middleware, the broker consumer); code that sends something on asks for [`outgoing`], a child
//! of it. When spans are exported ([`crate::telemetry`]), the receiver's span takes the incoming
//! context as its parent and the child carries that span's id, so the collector shows one tree.

use std::fmt;
use std::future::Future;

/// The HTTP header and AMQP header that carry the context.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C `traceparent`: version 00, a 16-byte trace id, an 8-byte parent span id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` value was ignored (a new trace is started instead).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>, ids not all zero)")]
pub struct InvalidTraceParent;

impl TraceParent {
    /// A new trace, sampled: nothing upstream said otherwise.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_id(),
            span_id: new_span_id(),
            flags: 0x01,
        }
    }

    /// The context to send on from here: same trace, a new span id.
    pub fn child(&self) -> Self {
        self.with_span_id(new_span_id())
    }

    /// Same trace and flags, with `span_id` as the parent (an exported span's own id).
    pub fn with_span_id(&self, span_id: [u8; 8]) -> Self {
        Self { span_id, ..*self }
    }

    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The trace id as 32 lowercase hex digits, as logs and collectors show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// Parses a header value. Versions above 00 are read as 00, as the spec asks, as long as
    /// the first four fields are well formed.
    pub fn parse(value: &str) -> Result<Self, InvalidTraceParent> {
        let value = value.trim();
        let mut parts = value.split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidTraceParent);
        };
        let version = unhex::<1>(version).ok_or(InvalidTraceParent)?[0];
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return Err(InvalidTraceParent);
        }
        let trace_id = unhex::<16>(trace).ok_or(InvalidTraceParent)?;
        let span_id = unhex::<8>(span).ok_or(InvalidTraceParent)?;
        let flags = unhex::<1>(flags).ok_or(InvalidTraceParent)?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(InvalidTraceParent);
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The incoming header if it is valid, else a new trace.
    pub fn from_header_or_new(value: Option<&str>) -> Self {
        value
            .and_then(|v| Self::parse(v).ok())
            .unwrap_or_else(Self::new_root)
    }
}

impl fmt::Display for TraceParent {
    /// `00-<32 hex>-<16 hex>-<2 hex>`, built on the stack.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&mut buf[3..35], &self.trace_id);
        hex_into(&mut buf[36..52], &self.span_id);
        hex_into(&mut buf[53..55], &[self.flags]);
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// Runs `work` with `context` as the trace context of everything it sends on.
pub async fn scope<F: Future>(context: TraceParent, work: F) -> F::Output {
    CURRENT.scope(context, work).await
}

/// The trace context of the work in progress, as received.
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|c| *c).ok()
}

/// The context to send with an outgoing call or message: a child of the current one, whose
/// parent span id is the current exported span when spans are exported. `None` outside any
/// trace (a sweeper's chore, a test).
pub fn outgoing() -> Option<TraceParent> {
    let current = current()?;
    Some(match crate::telemetry::current_span_id() {
        Some(span_id) => current.with_span_id(span_id),
        None => current.child(),
    })
}

/// [`outgoing`] as a header value.
pub fn outgoing_header() -> Option<String> {
    outgoing().map(|t| t.to_string())
}

fn new_span_id() -> [u8; 8] {
    let id = nonzero_id();
    let mut span = [0; 8];
    span.copy_from_slice(&id[..8]);
    span
}

/// 16 random bytes, never all zero. A v4 UUID fixes the top bits of its bytes 6 and 8 (version
/// and variant), and byte 8 begins the low half that an id-ratio sampler reads
/// (`OTEL_TRACES_SAMPLER=traceidratio` compares it with the ratio): with them fixed, no trace
/// was sampled below a ratio of 0.5 and every one above 0.75. So those two bytes come from a
/// second UUID's random ones.
fn nonzero_id() -> [u8; 16] {
    let mut id = *uuid::Uuid::new_v4().as_bytes();
    let more = uuid::Uuid::new_v4();
    let more = more.as_bytes();
    id[6] = more[0];
    id[8] = more[1];
    // The first 8 bytes become span ids: make sure they are never all zero.
    id[0] |= 0x01;
    id
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out` (exactly twice as long). No allocation, no
/// formatting machinery: every request, message and log line formats a trace id or two.
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

/// Exactly `2 * N` lowercase hex digits (the spec forbids upper case).
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_of_an_id_is_random() {
        // The bits a v4 UUID fixes (version in byte 6, variant in byte 8) take both values
        // across ids; 400 ids leave a chance of 2^-400 per bit of a false alarm.
        let (mut ones, mut zeros) = ([0u8; 16], [0u8; 16]);
        for _ in 0..400 {
            let id = nonzero_id();
            for i in 0..16 {
                ones[i] |= id[i];
                zeros[i] |= !id[i];
            }
        }
        for i in 1..16 {
            assert_eq!((ones[i], zeros[i]), (0xff, 0xff), "byte {i}");
        }
        // Byte 0's low bit is always set (span ids are never zero), the others vary.
        assert_eq!((ones[0], zeros[0]), (0xff, 0xfe));
    }

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let t = TraceParent::parse(SAMPLE).unwrap();
        assert_eq!(t.to_string(), SAMPLE);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.sampled());
    }

    #[test]
    fn formats_every_byte_as_the_spec_spells_it() {
        for _ in 0..200 {
            let t = TraceParent::new_root();
            let text = t.to_string();
            assert_eq!(TraceParent::parse(&text), Ok(t), "{text}");
            let expected: String = t.trace_id().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(t.trace_id_hex(), expected);
        }
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        assert_eq!(
            TraceParent::parse(unsampled).unwrap().to_string(),
            unsampled
        );
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), Err(InvalidTraceParent), "{bad}");
        }
        // A later version may append fields.
        assert!(TraceParent::parse(&format!("01{}-more", &SAMPLE[2..])).is_ok());
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let t = TraceParent::parse(SAMPLE).unwrap();
        let c = t.child();
        assert_eq!(c.trace_id(), t.trace_id());
        assert_ne!(c.span_id(), t.span_id());
        assert_eq!(c.flags(), t.flags());
        assert_ne!(
            TraceParent::new_root().trace_id(),
            TraceParent::new_root().trace_id()
        );
    }

    #[tokio::test]
    async fn the_context_is_scoped_to_the_task() {
        assert_eq!(current(), None);
        let t = TraceParent::parse(SAMPLE).unwrap();
        let seen = scope(t, async { outgoing() }).await.unwrap();
        assert_eq!(seen.trace_id(), t.trace_id());
        assert_ne!(seen.span_id(), t.span_id());
        assert_eq!(current(), None);
    }
}
