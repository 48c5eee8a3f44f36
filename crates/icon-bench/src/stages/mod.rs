//! `--stages`: where a checkout's time goes, from the spans ICON exports.
//!
//! With `--stages`, this tool listens for OTLP/HTTP JSON on a loopback address ([`collector`];
//! ICON's services export to it when started with `ICON_OTLP_ENDPOINT` pointing there, as
//! `scripts/bench.sh --stages` does), sends each measured checkout with a W3C `traceparent` of
//! its own making, so that it knows every checkout's trace id before the 202 arrives, and after
//! the phase cuts each traced checkout's time from `POST` to callback into stages
//! ([`breakdown`], where the stages are defined), reported by [`render`].
//!
//! Sampling is the `traceparent`'s sampled flag: `--stages-share F` sends it set on that share
//! of the checkouts (picked evenly by send order) and clear on the rest, and ICON's default
//! sampler (parent-based) follows it in every service, as the flag travels with the checkout
//! through the outbox and both queues. Every other request of the run (set-up, the backlog's
//! fill) goes with the flag clear, so only measured checkouts are exported.
//!
//! - [`otlp`]: an export body read into spans; pure.
//! - [`collector`]: the HTTP server that takes the exports.
//! - [`breakdown`]: the stages of each traced checkout and their percentiles; pure.
//! - [`phase`]: a measured phase's part: the warning when no span comes, the wait at its end.
//! - [`render`]: the stage table and the HTML chart.

pub mod breakdown;
pub mod collector;
pub mod otlp;
pub mod phase;
pub mod render;

use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;

pub use breakdown::Breakdown;
pub use collector::Received;

/// Where the collector listens when `--stages` is given without `--otlp-listen`: OTLP/HTTP's
/// registered port, so `scripts/bench.sh` knows the address before it starts the services.
pub const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 4318);

/// `--stages`, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StagesConfig {
    /// A loopback address.
    pub listen: SocketAddr,
    pub share: TraceShare,
}

/// The share of measured checkouts sent sampled, in parts per million, so the pick is integer
/// arithmetic and the same checkouts are traced in every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceShare(u64);

impl TraceShare {
    const WHOLE: u64 = 1_000_000;
    pub const ALL: TraceShare = TraceShare(Self::WHOLE);

    /// `None` unless `0 < share <= 1` (at the resolution of one in a million).
    pub fn new(share: f64) -> Option<Self> {
        let ppm = (share * Self::WHOLE as f64).round();
        (share.is_finite() && ppm >= 1.0 && ppm <= Self::WHOLE as f64).then_some(Self(ppm as u64))
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Self::WHOLE as f64
    }

    /// Whether the checkout sent `index`-th (from 0) is traced: as `SlowShare::picks`, so 0.1
    /// picks 9, 19, 29, ... and 1 picks all.
    pub fn picks(self, index: u64) -> bool {
        ((index + 1) * self.0) / Self::WHOLE > (index * self.0) / Self::WHOLE
    }
}

/// A `traceparent` for a new trace: `(trace id, header value)`. Both ids are wholly random (a
/// v4 UUID's fixed version and variant bits replaced from a second one), so an id-ratio
/// sampler downstream, which reads the trace id's low 63 bits, would sample fairly too.
pub fn new_traceparent(sampled: bool) -> (String, String) {
    let mut id = *uuid::Uuid::new_v4().as_bytes();
    let more = *uuid::Uuid::new_v4().as_bytes();
    id[6] = more[0];
    id[8] = more[1];
    let mut span = [0u8; 8];
    span.copy_from_slice(&more[8..]);
    // Never all zero (the spec's invalid ids).
    id[0] |= 0x01;
    span[7] |= 0x01;
    let trace_id = hex(&id);
    let flags = if sampled { "01" } else { "00" };
    let header = format!("00-{trace_id}-{}-{flags}", hex(&span));
    (trace_id, header)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A measured checkout that was sent sampled and accepted, with this tool's wall-clock marks
/// (the same clock as the spans', on one machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    pub checkout_id: String,
    pub trace_id: String,
    /// Just before the `POST /cart/checkout/` was handed to the client.
    pub sent_at: SystemTime,
    /// When its 202 had been read.
    pub answered_at: SystemTime,
}

/// What a measured phase reports of its stages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    /// The base URL ICON's `ICON_OTLP_ENDPOINT` should hold: the collector's.
    pub endpoint: String,
    /// `--stages-share`.
    pub share: f64,
    pub received: Received,
    /// How long the end of the phase waited for the traced checkouts' spans, and how many
    /// traces still lacked a service's closing span then.
    pub waited_s: f64,
    pub not_in: usize,
    #[serde(flatten)]
    pub breakdown: Breakdown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_pick_evenly_and_all_means_all() {
        let tenth = TraceShare::new(0.1).unwrap();
        let picked: Vec<u64> = (0..40).filter(|&i| tenth.picks(i)).collect();
        assert_eq!(picked, [9, 19, 29, 39]);
        assert!((0..1000).all(|i| TraceShare::ALL.picks(i)));
        assert_eq!(TraceShare::new(1.0), Some(TraceShare::ALL));
        for bad in [0.0, -0.5, 1.5, f64::NAN, 1e-9] {
            assert_eq!(TraceShare::new(bad), None, "{bad}");
        }
    }

    #[test]
    fn traceparents_are_well_formed_and_carry_the_flag() {
        let (trace, header) = new_traceparent(true);
        assert_eq!(trace.len(), 32);
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], trace);
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
        assert!(header
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(new_traceparent(false).1.ends_with("-00"));
        assert_ne!(new_traceparent(true).0, trace);
    }
}
