//! [`Behaviour`]: what the simulated retailer does with a valid order, and [`CancelBehaviour`]:
//! what it does when ICON asks it to cancel that order. Both are chosen by SKU prefix so a test
//! or a demo picks an outcome just by naming its items.
//!
//! The two tables are independent: no prefix of one starts with a prefix of the other, so a
//! `nocancel-dress` places like a plain `dress` and an `async-ship-sofa` cancels like one. An
//! order mixing the two (`async-ship-sofa` and `nocancel-mug`) takes each side from its table.

use crate::orders::OrderItem;

/// What the simulator does with a valid order that has no confirmed order for its key yet,
/// chosen by the first prefix (in [`Behaviour::PREFIXES`] order) that any item's SKU starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// `down-`: always 500, like a retailer in an outage.
    Down,
    /// `hang-`: never answers, so callers can prove their deadline works.
    Hang,
    /// `reject-`: 422, out of stock (a permanent refusal: no order is placed).
    Reject,
    /// `conflict-`: 409 "in progress" on the first request for a key, then confirms, so callers
    /// can prove they retry a 409 rather than take it for a refusal.
    Conflict,
    /// `flaky-`: 503 on the first request for a key, then confirms (a transient failure).
    Flaky,
    /// `busy-`: 429 with `Retry-After: 1` on the first request for a key, then confirms.
    Busy,
    /// `async-reject-`: 202 accepted, then after the async delay reports `order.rejected`
    /// (out of stock) by event.
    AsyncReject,
    /// `async-ship-`: 202 accepted, then reports `order.confirmed`, `order.shipped` (with
    /// tracking) and `order.delivered`, each the async delay after the one before.
    AsyncShip,
    /// `async-silent-`: 202 accepted and never reports: the order stays accepted, so callers
    /// can prove they do not wait for ever.
    AsyncSilent,
    /// `async-`: 202 accepted, then after the async delay reports `order.confirmed`.
    Async,
    /// `ghost-`: places the order but answers 502, as if the answer was lost on the way back, so
    /// callers can prove they settle an unacknowledged order by lookup. Later requests for the
    /// key replay the order like any confirmed one.
    Ghost,
    /// `slow-`: waits the configured delay, then confirms.
    Slow,
    /// `nul-`: confirms with an `order_id` full of control characters (NUL first), so callers
    /// can prove they sanitise what a retailer sends back.
    Nul,
    /// Anything else: confirms at once.
    Confirm,
}

impl Behaviour {
    /// Prefixes in priority order: an order mixing `down-` and `slow-` items is down. Refusals
    /// come before outcomes that place the order, so an order with any refusing item is refused,
    /// and `nul-` (a plain confirmation with an odd id) comes last. `async-` comes after the
    /// longer `async-…-` prefixes it is a prefix of, or it would shadow them.
    pub const PREFIXES: [(&'static str, Behaviour); 13] = [
        ("down-", Behaviour::Down),
        ("hang-", Behaviour::Hang),
        ("reject-", Behaviour::Reject),
        ("conflict-", Behaviour::Conflict),
        ("flaky-", Behaviour::Flaky),
        ("busy-", Behaviour::Busy),
        ("async-reject-", Behaviour::AsyncReject),
        ("async-ship-", Behaviour::AsyncShip),
        ("async-silent-", Behaviour::AsyncSilent),
        ("async-", Behaviour::Async),
        ("ghost-", Behaviour::Ghost),
        ("slow-", Behaviour::Slow),
        ("nul-", Behaviour::Nul),
    ];

    /// The behaviour for these items, with the SKU that chose it (named in refusal reasons).
    ///
    /// Each prefix is tried against every SKU before the next prefix, so `async-ship-x` is
    /// `async-ship-` even though it also starts with `async-`.
    pub fn of(items: &[OrderItem]) -> (Behaviour, Option<&str>) {
        Self::PREFIXES
            .iter()
            .find_map(|(prefix, behaviour)| {
                items
                    .iter()
                    .find(|item| item.sku.starts_with(prefix))
                    .map(|item| (*behaviour, Some(item.sku.as_str())))
            })
            .unwrap_or((Behaviour::Confirm, None))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Down => "down",
            Behaviour::Hang => "hang",
            Behaviour::Reject => "reject",
            Behaviour::Conflict => "conflict",
            Behaviour::Flaky => "flaky",
            Behaviour::Busy => "busy",
            Behaviour::AsyncReject => "async-reject",
            Behaviour::AsyncShip => "async-ship",
            Behaviour::AsyncSilent => "async-silent",
            Behaviour::Async => "async",
            Behaviour::Ghost => "ghost",
            Behaviour::Slow => "slow",
            Behaviour::Nul => "nul",
            Behaviour::Confirm => "confirm",
        }
    }
}

/// What the simulator does when ICON asks it to cancel an order that is placed and not cancelled
/// yet, chosen by the first prefix (in [`CancelBehaviour::PREFIXES`] order) that any of the
/// order's SKUs starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelBehaviour {
    /// `nocancel-`: 409 "already shipped", every time: a refusal the caller must not retry.
    Refuse,
    /// `cancel-async-refuse-`: 202, then after the async delay reports `order.cancel_refused`
    /// ("already shipped") by event; the order stays placed.
    AsyncRefuse,
    /// `cancel-async-`: 202, then after the async delay reports `order.cancelled` by event.
    Async,
    /// `cancel-hang-`: cancels the order but never answers the first request, as if the answer
    /// was lost; later ones find the order cancelled and answer 200. Callers can prove they
    /// retry a cancellation whose fate they do not know.
    Hang,
    /// Anything else: cancels at once, 200.
    Cancel,
}

impl CancelBehaviour {
    /// Prefixes in priority order: a refusal wins over any way of cancelling, as one item the
    /// retailer cannot take back keeps the whole order. `cancel-async-refuse-` comes before
    /// `cancel-async-`, which it starts with and would otherwise be shadowed by.
    pub const PREFIXES: [(&'static str, CancelBehaviour); 4] = [
        ("nocancel-", CancelBehaviour::Refuse),
        ("cancel-async-refuse-", CancelBehaviour::AsyncRefuse),
        ("cancel-async-", CancelBehaviour::Async),
        ("cancel-hang-", CancelBehaviour::Hang),
    ];

    /// The behaviour for an order of these items, tried prefix by prefix like [`Behaviour::of`].
    pub fn of(items: &[OrderItem]) -> CancelBehaviour {
        Self::PREFIXES
            .iter()
            .find(|(prefix, _)| items.iter().any(|item| item.sku.starts_with(prefix)))
            .map_or(CancelBehaviour::Cancel, |(_, behaviour)| *behaviour)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CancelBehaviour::Refuse => "nocancel",
            CancelBehaviour::AsyncRefuse => "cancel-async-refuse",
            CancelBehaviour::Async => "cancel-async",
            CancelBehaviour::Hang => "cancel-hang",
            CancelBehaviour::Cancel => "cancel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::Price;

    fn item(sku: &str) -> OrderItem {
        OrderItem {
            sku: sku.to_owned(),
            quantity: 1,
            unit_price: Price {
                amount_minor: 100,
                currency: "GBP".to_owned(),
            },
        }
    }

    #[test]
    fn behaviour_follows_prefix_priority_not_item_order() {
        let items = [item("slow-a"), item("reject-b"), item("down-c")];
        assert_eq!(Behaviour::of(&items), (Behaviour::Down, Some("down-c")));
        let items = [item("plain"), item("busy-x"), item("flaky-y")];
        assert_eq!(Behaviour::of(&items), (Behaviour::Flaky, Some("flaky-y")));
        let items = [item("nul-a"), item("slow-b"), item("ghost-c")];
        assert_eq!(Behaviour::of(&items), (Behaviour::Ghost, Some("ghost-c")));
        let items = [item("nul-a"), item("conflict-b")];
        assert_eq!(Behaviour::of(&items).0, Behaviour::Conflict);
        assert_eq!(Behaviour::of(&[item("nul-a")]).0, Behaviour::Nul);
        assert_eq!(Behaviour::of(&[item("dress")]), (Behaviour::Confirm, None));
        // A prefix must lead the SKU.
        assert_eq!(Behaviour::of(&[item("x-down-1")]).0, Behaviour::Confirm);
    }

    #[test]
    fn async_prefixes_do_not_shadow_each_other() {
        for (sku, behaviour) in [
            ("async-reject-hat", Behaviour::AsyncReject),
            ("async-ship-hat", Behaviour::AsyncShip),
            ("async-silent-hat", Behaviour::AsyncSilent),
            ("async-hat", Behaviour::Async),
            ("async-shipping", Behaviour::Async),
        ] {
            assert_eq!(Behaviour::of(&[item(sku)]), (behaviour, Some(sku)), "{sku}");
        }
        // After the refusals and the first-attempt failures, before the rest.
        let items = [item("async-a"), item("reject-b")];
        assert_eq!(Behaviour::of(&items).0, Behaviour::Reject);
        let items = [item("async-a"), item("busy-b")];
        assert_eq!(Behaviour::of(&items).0, Behaviour::Busy);
        let items = [item("slow-a"), item("ghost-b"), item("async-ship-c")];
        assert_eq!(Behaviour::of(&items).0, Behaviour::AsyncShip);
        let items = [item("async-b"), item("async-silent-a")];
        assert_eq!(Behaviour::of(&items).0, Behaviour::AsyncSilent);
    }

    #[test]
    fn every_prefix_names_its_behaviour() {
        for (prefix, behaviour) in Behaviour::PREFIXES {
            assert_eq!(prefix, format!("{}-", behaviour.as_str()));
        }
        assert_eq!(Behaviour::PREFIXES[0].1, Behaviour::Down);
    }

    #[test]
    fn every_cancel_prefix_names_its_behaviour() {
        for (prefix, behaviour) in CancelBehaviour::PREFIXES {
            assert_eq!(prefix, format!("{}-", behaviour.as_str()));
        }
        assert_eq!(CancelBehaviour::of(&[]), CancelBehaviour::Cancel);
    }

    #[test]
    fn cancel_prefixes_follow_priority_and_do_not_shadow_each_other() {
        for (sku, behaviour) in [
            ("nocancel-hat", CancelBehaviour::Refuse),
            ("cancel-async-refuse-hat", CancelBehaviour::AsyncRefuse),
            ("cancel-async-hat", CancelBehaviour::Async),
            ("cancel-async-refused", CancelBehaviour::Async),
            ("cancel-hang-hat", CancelBehaviour::Hang),
            ("hat", CancelBehaviour::Cancel),
            ("x-nocancel-hat", CancelBehaviour::Cancel),
        ] {
            assert_eq!(CancelBehaviour::of(&[item(sku)]), behaviour, "{sku}");
        }
        let items = [item("cancel-hang-a"), item("cancel-async-b")];
        assert_eq!(CancelBehaviour::of(&items), CancelBehaviour::Async);
        let items = [item("cancel-async-a"), item("plain"), item("nocancel-b")];
        assert_eq!(CancelBehaviour::of(&items), CancelBehaviour::Refuse);
    }

    /// A prefix listed after one it starts with could never be chosen.
    fn assert_no_shadowing(prefixes: &[&str]) {
        for (i, later) in prefixes.iter().enumerate() {
            for earlier in &prefixes[..i] {
                assert!(!later.starts_with(earlier), "{earlier} shadows {later}");
            }
        }
    }

    #[test]
    fn placement_and_cancellation_prefixes_are_independent() {
        let placing: Vec<&str> = Behaviour::PREFIXES.iter().map(|(p, _)| *p).collect();
        let cancelling: Vec<&str> = CancelBehaviour::PREFIXES.iter().map(|(p, _)| *p).collect();
        assert_no_shadowing(&placing);
        assert_no_shadowing(&cancelling);
        for p in &placing {
            for c in &cancelling {
                assert!(
                    !p.starts_with(c) && !c.starts_with(p),
                    "{p} and {c} overlap"
                );
            }
        }
        // So a SKU of either table means nothing to the other.
        for c in &cancelling {
            let sku = format!("{c}dress");
            assert_eq!(
                Behaviour::of(&[item(&sku)]),
                (Behaviour::Confirm, None),
                "{sku}"
            );
        }
        for p in &placing {
            let sku = format!("{p}dress");
            assert_eq!(CancelBehaviour::of(&[item(&sku)]), CancelBehaviour::Cancel);
        }
    }
}
