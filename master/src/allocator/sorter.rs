//! Sorters: the policy that orders clients (roles, or the frameworks of one
//! role) for allocation, and [`DrfSorter`], weighted Dominant Resource
//! Fairness.
//!
//! A sorter only sees quantities: it is told the cluster's total and what each
//! client was allocated or gave back, and orders its clients by fair share.
//! Which resources a client may get is the allocator's business.

use std::collections::btree_set;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use masterlink::resources::ResourceValue;
use masterlink::Resources;

/// Orders clients for allocation (Mesos' `Sorter`).
///
/// Contracts shared by every implementation:
/// * client names are unique; [`Sorter::add`] of a present client and
///   [`Sorter::remove`] of an absent one do nothing;
/// * [`Sorter::allocated`] / [`Sorter::unallocated`] of an absent client do
///   nothing; unallocating more than was allocated saturates at zero;
/// * only scalar resources whose names the sorter was built with count;
///   reservations and allocation roles are ignored (quantities only);
/// * [`Sorter::sort`] yields every client exactly once, the one to serve first
///   first, ties broken by name so the order is deterministic.
pub trait Sorter {
    /// The iterator [`Sorter::sort`] returns.
    type Iter<'a>: Iterator<Item = &'a Arc<str>>
    where
        Self: 'a;

    /// An empty sorter whose shares are computed over `fairness_resources`
    /// (resource names such as `cpus`, `mem`).
    fn with_fairness_resources(fairness_resources: &[String]) -> Self
    where
        Self: Sized;

    /// Adds `client` with nothing allocated and `weight` (> 0; the caller
    /// validates). A present client is left as it is.
    fn add(&mut self, client: &str, weight: f64);

    /// Removes `client` and forgets its allocation; absent clients are ignored.
    fn remove(&mut self, client: &str);

    /// True when `client` was added and not removed.
    fn contains(&self, client: &str) -> bool;

    /// How many clients there are.
    fn len(&self) -> usize;

    /// True when there is no client.
    fn is_empty(&self) -> bool;

    /// The clients, in no particular order.
    fn clients(&self) -> Vec<&str>;

    /// Sets the weight of a present client (> 0; the caller validates).
    fn update_weight(&mut self, client: &str, weight: f64);

    /// Adds `resources` (an agent's total) to the pool shares are relative to.
    fn add_total(&mut self, resources: &Resources);

    /// Removes `resources` from the pool (saturating at zero).
    fn remove_total(&mut self, resources: &Resources);

    /// Records that `client` was allocated `resources`.
    fn allocated(&mut self, client: &str, resources: &Resources);

    /// Records that `client` gave `resources` back.
    fn unallocated(&mut self, client: &str, resources: &Resources);

    /// The client's current (weighted) share, `None` for an absent client.
    fn share(&self, client: &str) -> Option<f64>;

    /// The clients in allocation order: the one to serve first first.
    fn sort(&mut self) -> Self::Iter<'_>;
}

/// A share with a total order (`f64::total_cmp`), for the sorted set.
#[derive(Debug, Clone, Copy)]
struct Share(f64);

impl PartialEq for Share {
    fn eq(&self, other: &Share) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Share) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Share) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// One position in the order: lowest share first, then by name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    share: Share,
    name: Arc<str>,
}

#[derive(Debug, Clone)]
struct Client {
    name: Arc<str>,
    weight: f64,
    /// Allocated thousandths, one per fairness resource.
    allocated: Vec<i64>,
    /// The share the client is filed under in `order` (valid unless dirty).
    share: Share,
}

/// Weighted DRF: a client's share is `max(allocated_r / total_r)` over the
/// fairness resources `r` with a non-zero total, divided by its weight; the
/// lowest share is served first, ties broken by name.
///
/// Clients are kept in a sorted set that is updated incrementally on every
/// allocation (O(log n)); a change of the total changes every share and marks
/// the set for a rebuild on the next [`Sorter::sort`].
#[derive(Debug, Clone)]
pub struct DrfSorter {
    names: Vec<String>,
    total: Vec<i64>,
    clients: HashMap<Arc<str>, Client>,
    order: BTreeSet<Entry>,
    /// Shares in `order` are stale (the total changed).
    dirty: bool,
}

/// The iterator of [`DrfSorter::sort`].
#[derive(Debug, Clone)]
pub struct DrfIter<'a>(btree_set::Iter<'a, Entry>);

impl<'a> Iterator for DrfIter<'a> {
    type Item = &'a Arc<str>;

    fn next(&mut self) -> Option<&'a Arc<str>> {
        self.0.next().map(|e| &e.name)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

fn dominant_share(allocated: &[i64], total: &[i64], weight: f64) -> f64 {
    let mut max = 0.0_f64;
    for (&a, &t) in allocated.iter().zip(total) {
        if t > 0 {
            max = max.max(a as f64 / t as f64);
        }
    }
    max / weight
}

impl DrfSorter {
    /// The fairness resource names this sorter counts.
    pub fn fairness_resources(&self) -> &[String] {
        &self.names
    }

    /// Adds `sign` times the counted quantities of `resources` to `into`,
    /// saturating at zero.
    fn accumulate(names: &[String], into: &mut [i64], resources: &Resources, sign: i64) {
        for r in resources {
            if let ResourceValue::Scalar(s) = r.value {
                if let Some(i) = names.iter().position(|n| *n == r.name) {
                    into[i] = (into[i] + sign * s.millis()).max(0);
                }
            }
        }
    }

    /// Moves `client` to its new place after its allocation changed.
    fn update_client(&mut self, client: &str, resources: &Resources, sign: i64) {
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        Self::accumulate(&self.names, &mut c.allocated, resources, sign);
        if self.dirty {
            return;
        }
        let share = Share(dominant_share(&c.allocated, &self.total, c.weight));
        if share != c.share {
            self.order.remove(&Entry {
                share: c.share,
                name: c.name.clone(),
            });
            c.share = share;
            self.order.insert(Entry {
                share,
                name: c.name.clone(),
            });
        }
    }

    /// Recomputes every share and rebuilds the order, if the total changed.
    fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        self.order.clear();
        for c in self.clients.values_mut() {
            c.share = Share(dominant_share(&c.allocated, &self.total, c.weight));
            self.order.insert(Entry {
                share: c.share,
                name: c.name.clone(),
            });
        }
        self.dirty = false;
    }
}

impl Sorter for DrfSorter {
    type Iter<'a> = DrfIter<'a>;

    fn with_fairness_resources(fairness_resources: &[String]) -> DrfSorter {
        DrfSorter {
            names: fairness_resources.to_vec(),
            total: vec![0; fairness_resources.len()],
            clients: HashMap::new(),
            order: BTreeSet::new(),
            dirty: false,
        }
    }

    fn add(&mut self, client: &str, weight: f64) {
        if self.clients.contains_key(client) {
            return;
        }
        let name: Arc<str> = Arc::from(client);
        let c = Client {
            name: name.clone(),
            weight,
            allocated: vec![0; self.names.len()],
            share: Share(0.0),
        };
        self.order.insert(Entry {
            share: c.share,
            name: name.clone(),
        });
        self.clients.insert(name, c);
    }

    fn remove(&mut self, client: &str) {
        if let Some(c) = self.clients.remove(client) {
            self.order.remove(&Entry {
                share: c.share,
                name: c.name,
            });
        }
    }

    fn contains(&self, client: &str) -> bool {
        self.clients.contains_key(client)
    }

    fn len(&self) -> usize {
        self.clients.len()
    }

    fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    fn clients(&self) -> Vec<&str> {
        self.clients.keys().map(|k| &**k).collect()
    }

    fn update_weight(&mut self, client: &str, weight: f64) {
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        c.weight = weight;
        if !self.dirty {
            self.order.remove(&Entry {
                share: c.share,
                name: c.name.clone(),
            });
            c.share = Share(dominant_share(&c.allocated, &self.total, weight));
            self.order.insert(Entry {
                share: c.share,
                name: c.name.clone(),
            });
        }
    }

    fn add_total(&mut self, resources: &Resources) {
        Self::accumulate(&self.names, &mut self.total, resources, 1);
        self.dirty = true;
    }

    fn remove_total(&mut self, resources: &Resources) {
        Self::accumulate(&self.names, &mut self.total, resources, -1);
        self.dirty = true;
    }

    fn allocated(&mut self, client: &str, resources: &Resources) {
        self.update_client(client, resources, 1);
    }

    fn unallocated(&mut self, client: &str, resources: &Resources) {
        self.update_client(client, resources, -1);
    }

    fn share(&self, client: &str) -> Option<f64> {
        self.clients
            .get(client)
            .map(|c| dominant_share(&c.allocated, &self.total, c.weight))
    }

    fn sort(&mut self) -> DrfIter<'_> {
        self.refresh();
        DrfIter(self.order.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(text: &str) -> Resources {
        masterlink::resources::parse(text).unwrap()
    }

    fn sorter() -> DrfSorter {
        DrfSorter::with_fairness_resources(&["cpus".to_string(), "mem".to_string()])
    }

    fn order(s: &mut DrfSorter) -> Vec<String> {
        s.sort().map(|c| c.to_string()).collect()
    }

    #[test]
    fn dominant_share_orders_clients() {
        let mut s = sorter();
        s.add_total(&res("cpus:10;mem:100;ports:[1-10]"));
        for c in ["c", "b", "a"] {
            s.add(c, 1.0);
        }
        // Ties are broken by name.
        assert_eq!(order(&mut s), ["a", "b", "c"]);
        // a: max(2/10, 10/100) = 0.2; b: max(1/10, 50/100) = 0.5.
        s.allocated("a", &res("cpus:2;mem:10"));
        s.allocated("b", &res("cpus:1;mem:50"));
        assert_eq!(order(&mut s), ["c", "a", "b"]);
        assert_eq!(s.share("a"), Some(0.2));
        assert_eq!(s.share("b"), Some(0.5));
        assert_eq!(s.share("x"), None);
        s.unallocated("b", &res("cpus:1;mem:50"));
        assert_eq!(order(&mut s), ["b", "c", "a"]);
        // Saturates at zero.
        s.unallocated("b", &res("cpus:5"));
        assert_eq!(s.share("b"), Some(0.0));
    }

    #[test]
    fn weights_divide_shares() {
        let mut s = sorter();
        s.add_total(&res("cpus:10;mem:100"));
        s.add("heavy", 4.0);
        s.add("light", 1.0);
        s.allocated("heavy", &res("cpus:4"));
        s.allocated("light", &res("cpus:2"));
        assert_eq!(order(&mut s), ["heavy", "light"]);
        assert_eq!(s.share("heavy"), Some(0.1));
        s.update_weight("heavy", 1.0);
        assert_eq!(order(&mut s), ["light", "heavy"]);
    }

    #[test]
    fn total_changes_rescale_and_reorder() {
        let mut s = sorter();
        s.add_total(&res("cpus:10;mem:100"));
        s.add("cpu", 1.0);
        s.add("ram", 1.0);
        s.allocated("cpu", &res("cpus:5"));
        s.allocated("ram", &res("mem:40"));
        assert_eq!(order(&mut s), ["ram", "cpu"]);
        s.add_total(&res("cpus:90"));
        assert_eq!(order(&mut s), ["cpu", "ram"]);
        s.remove("cpu");
        s.remove("cpu");
        assert_eq!(order(&mut s), ["ram"]);
        assert_eq!(s.len(), 1);
        s.remove_total(&res("cpus:100;mem:100"));
        // No total left: every share is zero.
        assert_eq!(s.share("ram"), Some(0.0));
    }
}
