//! Free-subnet search over the indices of a [`SubnetRange`]: taken subnets
//! are kept as merged index intervals, so finding the first free index at
//! or after a point takes two ordered-map lookups, O(log n) in the number of
//! leases.

use std::collections::BTreeMap;

use subnet_core::{Cidr, SubnetRange};

/// The taken indices of one range, as disjoint, non-adjacent intervals.
#[derive(Debug, Clone)]
pub struct TakenIndices<N: Cidr> {
    range: SubnetRange<N>,
    /// Interval start -> inclusive end.
    intervals: BTreeMap<u128, u128>,
}

impl<N: Cidr> TakenIndices<N> {
    /// Marks the range subnets that any of `taken` overlaps as taken.
    /// Subnets of another length count too: a leftover `/16` lease takes
    /// every `/24` inside it, and a `/26` takes the `/24` around it.
    pub fn new(range: SubnetRange<N>, taken: impl IntoIterator<Item = N>) -> Self {
        let mut spans: Vec<(u128, u128)> = taken
            .into_iter()
            .filter_map(|subnet| covered_indices(&range, &subnet))
            .collect();
        spans.sort_unstable();

        let mut intervals = BTreeMap::new();
        let mut current: Option<(u128, u128)> = None;
        for (start, end) in spans {
            current = match current {
                Some((open_start, open_end)) if start <= open_end.saturating_add(1) => {
                    Some((open_start, open_end.max(end)))
                }
                Some((open_start, open_end)) => {
                    intervals.insert(open_start, open_end);
                    Some((start, end))
                }
                None => Some((start, end)),
            };
        }
        if let Some((start, end)) = current {
            intervals.insert(start, end);
        }
        Self { range, intervals }
    }

    /// The range searched.
    pub fn range(&self) -> &SubnetRange<N> {
        &self.range
    }

    /// How many subnets of the range are taken.
    pub fn taken(&self) -> u128 {
        self.intervals
            .iter()
            .map(|(start, end)| end - start + 1)
            .sum()
    }

    /// Returns whether the subnet at `index` is taken.
    pub fn is_taken(&self, index: u128) -> bool {
        self.interval_containing(index).is_some()
    }

    /// Returns the first free index at or after `start`, wrapping around to
    /// index 0; `None` when every subnet is taken.
    pub fn first_free_from(&self, start: u128) -> Option<u128> {
        let len = self.range.len();
        let start = if start < len { start } else { 0 };
        let candidate = match self.interval_containing(start) {
            None => return Some(start),
            Some(end) => end.checked_add(1).filter(|next| *next < len),
        };
        // Intervals are merged, so the index after one is free unless it is
        // past the end; then the search wraps to 0.
        match candidate {
            Some(index) => Some(index),
            None => match self.interval_containing(0) {
                None => Some(0),
                Some(end) => end
                    .checked_add(1)
                    .filter(|next| *next < len && *next < start),
            },
        }
    }

    /// Returns the inclusive end of the interval holding `index`.
    fn interval_containing(&self, index: u128) -> Option<u128> {
        self.intervals
            .range(..=index)
            .next_back()
            .filter(|(_, end)| **end >= index)
            .map(|(_, end)| *end)
    }
}

/// The range indices that `subnet` overlaps, clipped to the range.
fn covered_indices<N: Cidr>(range: &SubnetRange<N>, subnet: &N) -> Option<(u128, u128)> {
    let shift = u32::from(N::BITS - range.subnet_len());
    let to_index = |bits: u128| bits.checked_shr(shift).unwrap_or(0);

    let range_first = to_index(range.min().network_bits());
    let range_last = range_first + (range.len() - 1);
    let first = to_index(subnet.network_bits());
    let last = to_index(N::addr_to_bits(subnet.last_addr()));
    if last < range_first || first > range_last {
        return None;
    }
    Some((
        first.max(range_first) - range_first,
        last.min(range_last) - range_first,
    ))
}
