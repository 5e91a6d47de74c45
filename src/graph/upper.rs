//! The upper layers (levels 1 and above) in memory: a cache over the lists stored at the
//! last checkpoint, loaded node by node on first use so that opening an index reads none
//! of them, and the only copy of the lists changed since (a changed node is always cached).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::Result;
use crate::store::UpperLists;

/// Where upper lists not yet in memory come from (the metadata's last checkpoint).
pub trait UpperSource: Send + Sync {
    /// `node`'s lists (empty: the node is on layer 0 only).
    fn lists(&self, node: u32) -> Result<UpperLists>;
    /// Every node's lists.
    fn all(&self) -> Result<Vec<(u32, UpperLists)>>;
}

/// One node's lists on levels 1..=its level, each behind its own lock.
pub(super) struct UpperNode {
    pub(super) lists: Box<[Mutex<Vec<u32>>]>,
}

impl UpperNode {
    pub(super) fn from_lists(lists: UpperLists) -> UpperNode {
        UpperNode {
            lists: lists.into_iter().map(Mutex::new).collect(),
        }
    }

    /// The node's level.
    pub(super) fn level(&self) -> usize {
        self.lists.len()
    }
}

/// The cache.
#[derive(Default)]
pub(super) struct UpperLayers {
    /// Node → its lists; `None`: known to have none. Absent: not loaded yet.
    cache: RwLock<HashMap<u32, Option<Arc<UpperNode>>>>,
    /// Every node of the source is in the cache.
    complete: AtomicBool,
    source: Option<Arc<dyn UpperSource>>,
}

impl UpperLayers {
    /// Reads lists not cached yet from `source` from now on.
    pub(super) fn set_source(&mut self, source: Arc<dyn UpperSource>) {
        self.source = Some(source);
    }

    /// `node`'s lists (`None`: it is on layer 0 only). A failed read of the source is an
    /// error, never taken for "no lists": that would silently cut the node's links.
    pub(super) fn get(&self, node: u32) -> Result<Option<Arc<UpperNode>>> {
        if let Some(e) = self.cache.read().get(&node) {
            return Ok(e.clone());
        }
        let Some(source) = self
            .source
            .as_ref()
            .filter(|_| !self.complete.load(Ordering::Acquire))
        else {
            return Ok(None);
        };
        let lists = source.lists(node)?;
        let loaded = (!lists.is_empty()).then(|| Arc::new(UpperNode::from_lists(lists)));
        Ok(self.cache.write().entry(node).or_insert(loaded).clone())
    }

    /// Replaces `node`'s lists in memory (the caller marks it dirty).
    pub(super) fn set(&self, node: u32, lists: Option<UpperNode>) {
        self.cache.write().insert(node, lists.map(Arc::new));
    }

    /// Loads every node not cached yet; afterwards misses cost nothing.
    pub(super) fn load_all(&self) -> Result<()> {
        if self.complete.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(source) = &self.source {
            let all = source.all()?;
            let mut cache = self.cache.write();
            for (node, lists) in all {
                cache
                    .entry(node)
                    .or_insert_with(|| Some(Arc::new(UpperNode::from_lists(lists))));
            }
        }
        self.complete.store(true, Ordering::Release);
        Ok(())
    }

    /// Every node with upper lists (loads them all).
    pub(super) fn nodes(&self) -> Result<Vec<(u32, Arc<UpperNode>)>> {
        self.load_all()?;
        Ok(self
            .cache
            .read()
            .iter()
            .filter_map(|(&n, u)| u.clone().map(|u| (n, u)))
            .collect())
    }

    /// The current lists of each of `nodes` (`None`: the node has none any more). Every
    /// changed node is cached, so this reads memory only.
    pub(super) fn snapshot(
        &self,
        nodes: impl IntoIterator<Item = u32>,
    ) -> Vec<(u32, Option<UpperLists>)> {
        let cache = self.cache.read();
        nodes
            .into_iter()
            .map(|n| {
                let lists = cache
                    .get(&n)
                    .cloned()
                    .flatten()
                    .map(|u| u.lists.iter().map(|l| l.lock().clone()).collect());
                (n, lists)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A source that fails for odd nodes.
    struct Flaky;

    impl UpperSource for Flaky {
        fn lists(&self, node: u32) -> Result<UpperLists> {
            if node % 2 == 1 {
                return Err(Error::Meta("read failed".into()));
            }
            Ok(if node == 0 {
                vec![vec![2], vec![]]
            } else {
                vec![]
            })
        }
        fn all(&self) -> Result<Vec<(u32, UpperLists)>> {
            Err(Error::Meta("read failed".into()))
        }
    }

    #[test]
    fn a_failed_read_is_an_error_not_an_empty_node() {
        let mut upper = UpperLayers::default();
        upper.set_source(Arc::new(Flaky));
        assert_eq!(upper.get(0).unwrap().unwrap().level(), 2);
        assert!(upper.get(2).unwrap().is_none());
        assert!(matches!(upper.get(1), Err(Error::Meta(_))));
        // Nothing was cached for the failed node: the next read asks the source again.
        assert!(upper.get(1).is_err());
        assert!(upper.nodes().is_err());
    }

    #[test]
    fn changed_lists_are_served_from_memory() {
        let mut upper = UpperLayers::default();
        upper.set_source(Arc::new(Flaky));
        upper.set(1, Some(UpperNode::from_lists(vec![vec![4, 5]])));
        assert_eq!(*upper.get(1).unwrap().unwrap().lists[0].lock(), vec![4, 5]);
        upper.set(0, None);
        assert_eq!(
            upper.snapshot([1, 0]),
            vec![(1, Some(vec![vec![4, 5]])), (0, None)]
        );
    }
}
