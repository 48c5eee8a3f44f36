//! `all_or_nothing` checkouts.
