//! An ordered map in a pool of nodes: the lanes' and armed sets' index.
//!
//! A treap (a binary search tree kept balanced by random priorities, so
//! every operation is O(log n) expected whatever the order keys come in)
//! whose nodes live in one vector and are linked by index. A node freed by a
//! removal goes on a free list and the next insertion takes it back: once the
//! pool has grown to the most entries the map ever held, inserting and
//! removing allocate nothing (a `BTreeMap` allocates a node at every split
//! and frees one at every merge, so its steady state allocates). The price:
//! the pool keeps the room of the map's busiest moment.
//!
//! Priorities are a keyed hash of the node's index, with a key drawn when the
//! map is created, so a sender who knows the code still cannot line keys up
//! with priorities to unbalance the tree.
//!
//! The nodes (and the call table's slots) are in a [`Pool`]: a vector of
//! fixed-size chunks, so that growing never moves what is there. A vector
//! that doubles leaves its old buffer behind at every step, and the
//! allocator cannot always give those holes back: with ten lanes growing
//! side by side that was 16 of the 122 bytes a waiting call cost.

use std::cmp::Ordering;
use std::hash::{BuildHasher, RandomState};

const NIL: u32 = u32::MAX;

/// Elements per chunk of a [`Pool`] past the first (which grows as a vector
/// up to this size, so that small pools stay small).
const CHUNK: usize = 4096;

/// A growable vector, indexed by `u32`, whose elements never move.
#[derive(Clone)]
pub(super) struct Pool<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Pool<T> {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, i: u32) -> Option<&T> {
        let i = i as usize;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    pub(super) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        let i = i as usize;
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    /// Append `value`; its index, or `None` past `u32::MAX - 1` elements
    /// (`u32::MAX` is the callers' "none").
    pub(super) fn push(&mut self, value: T) -> Option<u32> {
        let i = u32::try_from(self.len).ok().filter(|&i| i != u32::MAX)?;
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(value),
            _ => {
                // The first chunk grows as a vector; the others are made
                // whole, once.
                let mut chunk = Vec::with_capacity(if self.chunks.is_empty() { 0 } else { CHUNK });
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
        Some(i)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

struct Node<K, V> {
    key: K,
    val: V,
    left: u32,
    right: u32,
    /// For a free node: the next free one.
    parent: u32,
}

pub(super) struct Ordered<K, V> {
    nodes: Pool<Node<K, V>>,
    root: u32,
    free: u32,
    len: usize,
    seed: u64,
}

impl<K: Ord, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered {
            nodes: Pool::default(),
            root: NIL,
            free: NIL,
            len: 0,
            seed: RandomState::new().hash_one(0u8),
        }
    }
}

impl<K: Ord, V> Ordered<K, V> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    // Links are only ever indexes this map gave out: a miss would be a bug
    // in the tree code, never input.
    fn node(&self, i: u32) -> &Node<K, V> {
        self.nodes.get(i).expect("a linked node is in the pool")
    }

    fn node_mut(&mut self, i: u32) -> &mut Node<K, V> {
        self.nodes.get_mut(i).expect("a linked node is in the pool")
    }

    /// The priority of node `i`: the heap order of the treap (a parent's is
    /// at least its children's). SplitMix64's finaliser over index and key.
    fn prio(&self, i: u32) -> u64 {
        let mut z = u64::from(i) ^ self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Put `new` where `old` hangs from `parent` (or at the root).
    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        if parent == NIL {
            self.root = new;
        } else if self.node(parent).left == old {
            self.node_mut(parent).left = new;
        } else {
            self.node_mut(parent).right = new;
        }
        if new != NIL {
            self.node_mut(new).parent = parent;
        }
    }

    /// Rotate `x` above its parent, keeping the key order.
    fn rotate_up(&mut self, x: u32) {
        let p = self.node(x).parent;
        let g = self.node(p).parent;
        if self.node(p).left == x {
            let b = self.node(x).right;
            self.node_mut(p).left = b;
            if b != NIL {
                self.node_mut(b).parent = p;
            }
            self.node_mut(x).right = p;
        } else {
            let b = self.node(x).left;
            self.node_mut(p).right = b;
            if b != NIL {
                self.node_mut(b).parent = p;
            }
            self.node_mut(x).left = p;
        }
        self.node_mut(p).parent = x;
        self.replace_child(g, p, x);
    }

    fn find(&self, key: &K) -> u32 {
        let mut cur = self.root;
        while cur != NIL {
            let n = self.node(cur);
            cur = match key.cmp(&n.key) {
                Ordering::Less => n.left,
                Ordering::Greater => n.right,
                Ordering::Equal => return cur,
            };
        }
        NIL
    }

    #[cfg(test)]
    pub(super) fn contains(&self, key: &K) -> bool {
        self.find(key) != NIL
    }

    /// Insert `key` unless it is there; `false` (and nothing changed) if it is.
    pub(super) fn insert(&mut self, key: K, val: V) -> bool {
        let (mut parent, mut go_left) = (NIL, false);
        let mut cur = self.root;
        while cur != NIL {
            let n = self.node(cur);
            parent = cur;
            match key.cmp(&n.key) {
                Ordering::Less => (cur, go_left) = (n.left, true),
                Ordering::Greater => (cur, go_left) = (n.right, false),
                Ordering::Equal => return false,
            }
        }
        let node = Node {
            key,
            val,
            left: NIL,
            right: NIL,
            parent,
        };
        let x = if self.free != NIL {
            let x = self.free;
            self.free = self.node(x).parent;
            *self.node_mut(x) = node;
            x
        } else {
            // Past u32::MAX - 1 nodes (never: the caps are far below) the
            // index would collide with NIL; refuse rather than corrupt.
            let Some(x) = self.nodes.push(node) else {
                return false;
            };
            x
        };
        if parent == NIL {
            self.root = x;
        } else if go_left {
            self.node_mut(parent).left = x;
        } else {
            self.node_mut(parent).right = x;
        }
        loop {
            let p = self.node(x).parent;
            if p == NIL || self.prio(p) >= self.prio(x) {
                break;
            }
            self.rotate_up(x);
        }
        self.len += 1;
        true
    }

    /// Take node `x` out of the tree and put it on the free list.
    fn unlink(&mut self, x: u32) {
        loop {
            let (l, r) = (self.node(x).left, self.node(x).right);
            if l == NIL || r == NIL {
                let child = if l == NIL { r } else { l };
                let parent = self.node(x).parent;
                self.replace_child(parent, x, child);
                break;
            }
            // The child of higher priority comes up; `x` goes down.
            let up = if self.prio(l) >= self.prio(r) { l } else { r };
            self.rotate_up(up);
        }
        let free = self.free;
        let n = self.node_mut(x);
        n.left = NIL;
        n.right = NIL;
        n.parent = free;
        self.free = x;
        self.len -= 1;
    }

    /// Remove `key`; `true` if it was there. The node's key and value stay
    /// in the pool until it is reused (they are plain data here).
    pub(super) fn remove(&mut self, key: &K) -> bool {
        let x = self.find(key);
        if x == NIL {
            return false;
        }
        self.unlink(x);
        true
    }

    fn leftmost(&self, mut cur: u32) -> u32 {
        if cur == NIL {
            return NIL;
        }
        while self.node(cur).left != NIL {
            cur = self.node(cur).left;
        }
        cur
    }

    fn successor(&self, x: u32) -> u32 {
        let r = self.node(x).right;
        if r != NIL {
            return self.leftmost(r);
        }
        let mut x = x;
        let mut p = self.node(x).parent;
        while p != NIL && self.node(p).right == x {
            x = p;
            p = self.node(p).parent;
        }
        p
    }

    pub(super) fn first(&self) -> Option<(&K, &V)> {
        let x = self.leftmost(self.root);
        (x != NIL).then(|| {
            let n = self.node(x);
            (&n.key, &n.val)
        })
    }

    /// The entries from the first not below `from`, in order.
    pub(super) fn range_from(&self, from: &K) -> Iter<'_, K, V> {
        let (mut cur, mut best) = (self.root, NIL);
        while cur != NIL {
            let n = self.node(cur);
            if n.key >= *from {
                best = cur;
                cur = n.left;
            } else {
                cur = n.right;
            }
        }
        Iter {
            map: self,
            at: best,
        }
    }

    /// Every entry, in order.
    pub(super) fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            map: self,
            at: self.leftmost(self.root),
        }
    }
}

impl<K: Ord + Clone, V: Clone> Ordered<K, V> {
    /// Remove and return the first entry.
    pub(super) fn pop_first(&mut self) -> Option<(K, V)> {
        let x = self.leftmost(self.root);
        if x == NIL {
            return None;
        }
        let n = self.node(x);
        let out = (n.key.clone(), n.val.clone());
        self.unlink(x);
        Some(out)
    }
}

pub(super) struct Iter<'a, K, V> {
    map: &'a Ordered<K, V>,
    at: u32,
}

impl<'a, K: Ord, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == NIL {
            return None;
        }
        let map = self.map;
        let n = map.node(self.at);
        self.at = map.successor(self.at);
        Some((&n.key, &n.val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u8),
        Remove(u16),
        PopFirst,
        RangeFrom(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        // A narrow key space, so that removals and duplicates hit.
        prop_oneof![
            4 => (0u16..300, any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u16..300).prop_map(Op::Remove),
            1 => Just(Op::PopFirst),
            1 => (0u16..300).prop_map(Op::RangeFrom),
        ]
    }

    /// Parent links and order hold everywhere, and the heap order of
    /// priorities.
    fn check(m: &Ordered<u16, u8>) {
        let mut count = 0;
        let mut stack = vec![m.root];
        while let Some(x) = stack.pop() {
            if x == NIL {
                continue;
            }
            count += 1;
            let n = m.node(x);
            for c in [n.left, n.right] {
                if c != NIL {
                    assert_eq!(m.node(c).parent, x);
                    assert!(m.prio(x) >= m.prio(c));
                }
            }
            if n.left != NIL {
                assert!(m.node(n.left).key < n.key);
            }
            if n.right != NIL {
                assert!(m.node(n.right).key > n.key);
            }
            stack.extend([n.left, n.right]);
        }
        assert_eq!(count, m.len());
    }

    proptest! {
        #[test]
        fn behaves_as_a_btreemap(ops in proptest::collection::vec(op(), 0..400)) {
            let mut m = Ordered::default();
            let mut b = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let fresh = !b.contains_key(&k);
                        if fresh {
                            b.insert(k, v);
                        }
                        prop_assert_eq!(m.insert(k, v), fresh);
                    }
                    Op::Remove(k) => prop_assert_eq!(m.remove(&k), b.remove(&k).is_some()),
                    Op::PopFirst => prop_assert_eq!(m.pop_first(), b.pop_first()),
                    Op::RangeFrom(k) => {
                        let got: Vec<_> = m.range_from(&k).collect();
                        let want: Vec<_> = b.range(k..).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(m.len(), b.len());
                prop_assert_eq!(m.first(), b.first_key_value());
                prop_assert!(m.contains(&0) == b.contains_key(&0));
            }
            check(&m);
            let got: Vec<_> = m.iter().collect();
            let want: Vec<_> = b.iter().collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn the_pool_is_reused_once_grown() {
        let mut m = Ordered::default();
        for k in 0..1_000u32 {
            m.insert(k, ());
        }
        let cap = m.nodes.len();
        for k in 1_000..100_000u32 {
            assert!(m.remove(&(k - 1_000)));
            assert!(m.insert(k, ()));
        }
        assert_eq!(m.nodes.len(), cap);
        assert_eq!(m.len(), 1_000);
        assert_eq!(m.first(), Some((&99_000, &())));
    }

    #[test]
    fn sorted_inserts_stay_shallow() {
        let mut m = Ordered::default();
        for k in 0..100_000u32 {
            m.insert(k, ());
        }
        let depth = |mut x: u32| {
            let mut d = 0;
            while x != NIL {
                x = m.node(x).parent;
                d += 1;
            }
            d
        };
        assert!(m.nodes.chunks.len() > 1, "spans chunks");
        let deepest = (0..m.nodes.len() as u32).map(depth).max().unwrap_or(0);
        // Expected about 2 ln n (23 here); a list would be 100,000 deep.
        assert!(deepest < 100, "{deepest}");
    }
}
