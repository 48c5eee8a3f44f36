//! The stages' names and definitions (the marks are those of [`super`]'s documentation).

/// A stage of a checkout's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    ToGateway,
    Gateway,
    RequestedQueue,
    WorkerClaim,
    Retailer,
    WorkerCommit,
    FinishedQueue,
    NotifierClaim,
    Callback,
    Unattributed,
    GatewayAnswer,
    Record,
}

/// The stages from `POST` to callback, in order; with [`Stage::Unattributed`] they add up to
/// the end-to-end time.
pub const PATH: [Stage; 9] = [
    Stage::ToGateway,
    Stage::Gateway,
    Stage::RequestedQueue,
    Stage::WorkerClaim,
    Stage::Retailer,
    Stage::WorkerCommit,
    Stage::FinishedQueue,
    Stage::NotifierClaim,
    Stage::Callback,
];

/// Measured for the same checkouts, but not on the way to the callback.
pub const BESIDE: [Stage; 2] = [Stage::GatewayAnswer, Stage::Record];

impl Stage {
    pub fn key(self) -> &'static str {
        match self {
            Stage::ToGateway => "to_gateway",
            Stage::Gateway => "gateway",
            Stage::RequestedQueue => "requested_queue",
            Stage::WorkerClaim => "worker_claim",
            Stage::Retailer => "retailer",
            Stage::WorkerCommit => "worker_commit",
            Stage::FinishedQueue => "finished_queue",
            Stage::NotifierClaim => "notifier_claim",
            Stage::Callback => "callback",
            Stage::Unattributed => "unattributed",
            Stage::GatewayAnswer => "gateway_answer",
            Stage::Record => "record",
        }
    }

    /// The name in the table and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Stage::ToGateway => "to the gateway",
            Stage::Gateway => "gateway (incl. commit)",
            Stage::RequestedQueue => "publish+queue requested",
            Stage::WorkerClaim => "worker claim",
            Stage::Retailer => "retailer call",
            Stage::WorkerCommit => "worker commit",
            Stage::FinishedQueue => "publish+queue finished",
            Stage::NotifierClaim => "notifier claim",
            Stage::Callback => "callback",
            Stage::Unattributed => "unattributed",
            Stage::GatewayAnswer => "202 after handler",
            Stage::Record => "record (after cb)",
        }
    }

    /// From which mark to which, as the module documentation names them.
    pub fn definition(self) -> &'static str {
        match self {
            Stage::ToGateway => "POST sent -> gateway `request` span start",
            Stage::Gateway => "gateway `request` start -> `POST /cart/checkout/` end",
            Stage::RequestedQueue => {
                "`POST /cart/checkout/` end -> worker `message` (checkout.requested) start"
            }
            Stage::WorkerClaim => "`store.claim_pass` (start -> end)",
            Stage::Retailer => "first retailer call (`place`/`lookup`) start -> last end",
            Stage::WorkerCommit => "`store.complete_pass` (start -> end)",
            Stage::FinishedQueue => {
                "`store.complete_pass` end -> notifier `message` (checkout.finished) start"
            }
            Stage::NotifierClaim => "notifier `message` start -> `callback` span start",
            Stage::Callback => "`callback` span start -> callback received by icon-bench",
            Stage::Unattributed => {
                "end-to-end minus the stages above: the worker between its spans"
            }
            Stage::GatewayAnswer => "`POST /cart/checkout/` end -> gateway `request` end",
            Stage::Record => "`callback` span end -> notifier `message` end",
        }
    }
}
