//! Bounded memory for the fake FCM and the SMTP sink: [`Recent`], the last `MAX` records of a
//! log, and [`Firsts`], which tells the first time a key is seen from the later ones (what
//! `busy-` and `down-` need). Both forget the oldest entries once full, so a long demo or a
//! benchmark cannot grow the simulator without bound.

use std::collections::{HashSet, VecDeque};

/// The last `MAX` records, oldest first.
#[derive(Debug)]
pub(crate) struct Recent<T, const MAX: usize>(VecDeque<T>);

impl<T, const MAX: usize> Default for Recent<T, MAX> {
    fn default() -> Self {
        Self(VecDeque::new())
    }
}

impl<T: Clone, const MAX: usize> Recent<T, MAX> {
    pub(crate) fn push(&mut self, record: T) {
        if self.0.len() >= MAX {
            self.0.pop_front();
        }
        self.0.push_back(record);
    }

    pub(crate) fn list(&self) -> Vec<T> {
        self.0.iter().cloned().collect()
    }
}

/// Keys seen so far, up to `MAX` (the oldest forgotten first: a forgotten key counts as new
/// again, which for a `busy-` token only means one more simulated failure).
#[derive(Debug)]
pub(crate) struct Firsts<const MAX: usize> {
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl<const MAX: usize> Default for Firsts<MAX> {
    fn default() -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }
}

impl<const MAX: usize> Firsts<MAX> {
    /// `true` the first time `key` is passed, `false` after.
    pub(crate) fn first(&mut self, key: &str) -> bool {
        if self.seen.contains(key) {
            return false;
        }
        if self.order.len() >= MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(key.to_owned());
        self.order.push_back(key.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keeps_the_last_max_oldest_first() {
        let mut log = Recent::<u32, 3>::default();
        for n in 0..5 {
            log.push(n);
        }
        assert_eq!(log.list(), [2, 3, 4]);
    }

    #[test]
    fn firsts_tells_the_first_time_and_forgets_the_oldest() {
        let mut seen = Firsts::<2>::default();
        assert!(seen.first("a"));
        assert!(!seen.first("a"));
        assert!(seen.first("b"));
        assert!(seen.first("c"));
        assert!(seen.first("a"), "a was forgotten to make room for c");
        assert!(!seen.first("c"));
    }
}
