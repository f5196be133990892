//! The one k-way merge: sorted sources in, each distinct key once out, in key order. Scans,
//! compaction and adapters (the Stellar type scan) all merge through [`Merger`].
//!
//! Sources are ranked: index 0 is the newest. When several sources hold a key, the *resolve
//! rule* is that the newest one wins: the merge hands the caller that source, positioned on the
//! key, and moves every older source past it. What the caller does with the winner (yield it,
//! skip a tombstone, drop a DEAD entry) is the caller's; [`Merger::next_resolved`] takes it as a
//! closure.
//!
//! Memory: one key per source (the heap), never a set of seen keys.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::Result;

/// A sorted source of keys, positioned on one entry at a time.
pub trait MergeSource {
    /// Moves to the next entry; `false` at the end. Keys must come in strictly increasing
    /// order. Before the first call the source is positioned nowhere.
    fn advance(&mut self) -> Result<bool>;
    /// The current key; only called after `advance` returned `true`.
    fn key(&self) -> &[u8];
}

/// A k-way merge over ranked sources (see the module docs).
pub struct Merger<S> {
    sources: Vec<S>,
    heap: BinaryHeap<Reverse<(Vec<u8>, usize)>>,
    /// The winner handed out last: advanced at the next call.
    pending: Option<usize>,
    started: bool,
}

impl<S: MergeSource> Merger<S> {
    /// A merge of `sources`, newest first.
    pub fn new(sources: Vec<S>) -> Merger<S> {
        Merger {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            pending: None,
            started: false,
        }
    }

    fn pull(&mut self, i: usize) -> Result<()> {
        if self.sources[i].advance()? {
            self.heap.push(Reverse((self.sources[i].key().to_vec(), i)));
        }
        Ok(())
    }

    /// The next distinct key and the rank of the newest source holding it, which stays
    /// positioned on the key until the next call; `None` when every source is exhausted.
    pub fn next_winner(&mut self) -> Result<Option<(Vec<u8>, usize)>> {
        if !self.started {
            self.started = true;
            for i in 0..self.sources.len() {
                self.pull(i)?;
            }
        }
        if let Some(i) = self.pending.take() {
            self.pull(i)?;
        }
        let Some(Reverse((key, rank))) = self.heap.pop() else {
            return Ok(None);
        };
        // Older versions of the same key lose: move their sources on.
        while let Some(Reverse((k, _))) = self.heap.peek() {
            if *k != key {
                break;
            }
            let Reverse((_, older)) = self.heap.pop().expect("peeked");
            self.pull(older)?;
        }
        self.pending = Some(rank);
        Ok(Some((key, rank)))
    }

    /// The next winner that `resolve` keeps: `resolve` gets the key and the winning source
    /// (positioned on it) and returns `Some` to yield, `None` to skip the key.
    pub fn next_resolved<T>(
        &mut self,
        mut resolve: impl FnMut(Vec<u8>, &mut S) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        while let Some((key, rank)) = self.next_winner()? {
            if let Some(out) = resolve(key, &mut self.sources[rank])? {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    /// The sources, newest first.
    pub fn sources(&self) -> &[S] {
        &self.sources
    }
}

/// One `next` of an iterator over a fallible `step`: `Ok(Some(item))` is the item, `Ok(None)`
/// the end, and an error is yielded once, after which (`failed` set) the iterator ends.
pub fn fused_next<T, E>(
    failed: &mut bool,
    step: impl FnOnce() -> std::result::Result<Option<T>, E>,
) -> Option<std::result::Result<T, E>> {
    if *failed {
        return None;
    }
    let item = step().transpose();
    *failed = matches!(item, Some(Err(_)));
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    struct VecSource {
        items: Vec<(Vec<u8>, u32)>,
        at: Option<usize>,
    }

    impl MergeSource for VecSource {
        fn advance(&mut self) -> Result<bool> {
            let next = self.at.map_or(0, |i| i + 1);
            self.at = Some(next);
            Ok(next < self.items.len())
        }
        fn key(&self) -> &[u8] {
            &self.items[self.at.expect("positioned")].0
        }
    }

    fn source(items: &[(&str, u32)]) -> VecSource {
        VecSource {
            items: items
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), *v))
                .collect(),
            at: None,
        }
    }

    #[test]
    fn the_newest_source_wins_and_the_resolve_rule_filters() {
        let newest = source(&[("b", 10), ("d", 0)]);
        let older = source(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
        let oldest = source(&[("c", 30), ("e", 5)]);
        let mut m = Merger::new(vec![newest, older, oldest]);
        let mut out = Vec::new();
        // Value 0 is a tombstone here: the resolve rule skips it.
        while let Some(kv) = m
            .next_resolved(|k, s| {
                let v = s.items[s.at.unwrap()].1;
                Ok((v != 0).then(|| (String::from_utf8(k).unwrap(), v)))
            })
            .unwrap()
        {
            out.push(kv);
        }
        let want = [("a", 1), ("b", 10), ("c", 3), ("e", 5)];
        let want: Vec<(String, u32)> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn no_sources_and_empty_sources_end_at_once() {
        let mut m: Merger<VecSource> = Merger::new(Vec::new());
        assert!(m.next_winner().unwrap().is_none());
        let mut m = Merger::new(vec![source(&[]), source(&[])]);
        assert!(m.next_winner().unwrap().is_none());
    }
}
