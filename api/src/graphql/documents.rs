//! A cache of parsed GraphQL documents, keyed by the query text.
//!
//! Clients send the same few documents over and over (the typed client's
//! operations); parsing one is a good part of the cost of a small query. A
//! document enters the cache only after it parsed and passed `guard`'s checks
//! (which depend only on the document and the process's fixed limits), so a hit
//! skips both. Variables are never part of the key: they are checked on every
//! request. async-graphql's own validation still runs on every request.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

/// Documents longer than this are not cached (they are rare, and a cache entry
/// should stay small).
const MAX_CACHED_QUERY_BYTES: usize = 16 * 1024;

pub struct DocumentCache {
    entries: Option<Mutex<LruCache<String, ExecutableDocument>>>,
}

impl DocumentCache {
    /// A cache of at most `capacity` documents, least recently used evicted
    /// first; 0 disables it.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    pub fn get(&self, query: &str) -> Option<ExecutableDocument> {
        let entries = self.entries.as_ref()?;
        // A poisoned lock only means another request panicked mid-update; the
        // cache is then skipped, never trusted half-written.
        let mut entries = entries.lock().ok()?;
        entries.get(query).cloned()
    }

    pub fn insert(&self, query: &str, doc: &ExecutableDocument) {
        if query.len() > MAX_CACHED_QUERY_BYTES {
            return;
        }
        let Some(entries) = self.entries.as_ref() else {
            return;
        };
        if let Ok(mut entries) = entries.lock() {
            entries.put(query.to_owned(), doc.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(q: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(q).unwrap()
    }

    #[test]
    fn returns_what_was_stored_and_evicts_the_least_recently_used() {
        let cache = DocumentCache::new(2);
        cache.insert("{ a }", &doc("{ a }"));
        cache.insert("{ b }", &doc("{ b }"));
        assert!(cache.get("{ a }").is_some());
        cache.insert("{ c }", &doc("{ c }"));
        assert!(
            cache.get("{ b }").is_none(),
            "b was the least recently used"
        );
        assert!(cache.get("{ a }").is_some());
        assert!(cache.get("{ c }").is_some());
    }

    #[test]
    fn zero_capacity_and_long_queries_are_not_cached() {
        let off = DocumentCache::new(0);
        off.insert("{ a }", &doc("{ a }"));
        assert!(off.get("{ a }").is_none());
        let cache = DocumentCache::new(4);
        let long = format!("{{ a {} }}", " ".repeat(MAX_CACHED_QUERY_BYTES));
        cache.insert(&long, &doc(&long));
        assert!(cache.get(&long).is_none());
    }
}
