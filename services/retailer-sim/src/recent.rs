//! Bounded memory for the fake FCM, the SMTP sink and the event log: [`Recent`], the last `MAX`
//! records of a log, and [`Firsts`], which tells the first time a key is seen from the later
//! ones (what `busy-` and `down-` need). Both forget the oldest entries once full, so a long demo
//! or a benchmark cannot grow the simulator without bound.

use std::collections::{HashSet, VecDeque};

/// The last `MAX` records, oldest first.
#[derive(Debug)]
pub(crate) struct Recent<T, const MAX: usize> {
    records: VecDeque<T>,
    /// The sequence number of `records[0]`. A record is addressed by sequence number, so one
    /// updated after it was dropped from a full log updates nothing (the event log fills in
    /// each try of a send as it happens).
    first_seq: u64,
}

impl<T, const MAX: usize> Default for Recent<T, MAX> {
    fn default() -> Self {
        Self {
            records: VecDeque::new(),
            first_seq: 0,
        }
    }
}

impl<T: Clone, const MAX: usize> Recent<T, MAX> {
    /// Appends `record` and returns its sequence number, for [`Self::get_mut`].
    pub(crate) fn push(&mut self, record: T) -> u64 {
        if self.records.len() >= MAX {
            self.records.pop_front();
            self.first_seq += 1;
        }
        self.records.push_back(record);
        self.first_seq + self.records.len() as u64 - 1
    }

    /// The record pushed as `seq`, unless it has been dropped since.
    pub(crate) fn get_mut(&mut self, seq: u64) -> Option<&mut T> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.records.get_mut(index)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.records.iter()
    }

    pub(crate) fn list(&self) -> Vec<T> {
        self.records.iter().cloned().collect()
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
    fn recent_addresses_records_by_sequence_number() {
        let mut log = Recent::<u32, 2>::default();
        let first = log.push(10);
        let second = log.push(20);
        let third = log.push(30);
        assert_eq!(log.get_mut(first), None, "dropped to make room");
        *log.get_mut(second).expect("kept") += 1;
        assert_eq!(log.get_mut(third + 1), None, "not pushed yet");
        assert_eq!(log.list(), [21, 30]);
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
