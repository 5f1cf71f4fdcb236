//! The forwarding table: from a peer's subnet to the peer's PublicIP.
//!
//! Every lease in a network has the network's SubnetLen, so the lease that
//! contains an address is found by arithmetic: the slot index is
//! `(addr - network) >> (32 - SubnetLen)`. Slots are atomics in lazily
//! allocated pages, so a lookup is two array reads whatever the number of
//! peers, and an update is one atomic store that the packet loops see on
//! their next lookup, without locks or copies.
//!
//! A subnet whose prefix length differs from SubnetLen, or that lies outside
//! the network (an operator's reservation after a config change, say), goes
//! into a short list that is searched before the slots.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use ipnet::Ipv4Net;

use crate::packet::PeerLookup;

/// At most this many pages in the top level; pages grow instead.
const MAX_PAGE_BITS_TOP: u32 = 12;
/// At least this many slots per page (1,024 slots are 4 KiB).
const MIN_PAGE_BITS: u32 = 10;

/// An invalid network or local lease given to [`PeerTable::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The local lease does not lie inside the network.
    #[error("invalid local lease {lease}: it must lie inside the network {network} with a prefix length of at least /{}", network.prefix_len())]
    LeaseOutsideNetwork {
        /// The local lease.
        lease: Ipv4Net,
        /// The overlay network.
        network: Ipv4Net,
    },
}

/// A rejected peer update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The PublicIP cannot be a unicast peer address.
    #[error("invalid PublicIP {public_ip} for peer subnet {subnet}: expected a unicast address, not 0.0.0.0, broadcast or multicast")]
    InvalidPublicIp {
        /// The peer's subnet.
        subnet: Ipv4Net,
        /// The rejected PublicIP.
        public_ip: Ipv4Addr,
    },
    /// The subnet has host bits set.
    #[error("invalid peer subnet {subnet}: host bits are set, expected {}", subnet.trunc())]
    HostBitsSet {
        /// The rejected subnet.
        subnet: Ipv4Net,
    },
    /// The subnet overlaps this host's own lease.
    #[error("invalid peer subnet {subnet}: it overlaps the local lease {local}")]
    OverlapsLocalLease {
        /// The rejected subnet.
        subnet: Ipv4Net,
        /// This host's lease.
        local: Ipv4Net,
    },
}

/// A handle on the forwarding table shared by the packet loops.
///
/// Cloning is cheap and every clone updates the same table. Updates may run
/// from any thread while packets flow; each slot changes atomically.
#[derive(Debug, Clone)]
pub struct PeerTable {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    network: Ipv4Net,
    local: Ipv4Net,
    /// Bits of a slot index: SubnetLen minus the network's prefix length.
    slot_bits: u32,
    page_bits: u32,
    pages: Box<[OnceLock<Box<[AtomicU32]>>]>,
    /// Subnets that do not fit a slot, longest prefix first.
    others: RwLock<Vec<(Ipv4Net, Ipv4Addr)>>,
    others_present: AtomicBool,
    /// Every peer, for removal, `replace_all` and snapshots. Writers hold
    /// this lock for the whole update so that updates do not interleave.
    entries: Mutex<BTreeMap<Ipv4Net, Ipv4Addr>>,
}

impl PeerTable {
    /// Creates an empty table for peers in `network` whose leases have the
    /// same prefix length as `local_lease`.
    pub fn new(network: Ipv4Net, local_lease: Ipv4Net) -> Result<PeerTable, TableError> {
        let network = network.trunc();
        let local = local_lease.trunc();
        if local.prefix_len() < network.prefix_len() || !network.contains(&local) {
            return Err(TableError::LeaseOutsideNetwork {
                lease: local_lease,
                network,
            });
        }

        let slot_bits = u32::from(local.prefix_len() - network.prefix_len());
        let page_bits = slot_bits
            .saturating_sub(MAX_PAGE_BITS_TOP)
            .max(MIN_PAGE_BITS);
        let page_count = 1usize << slot_bits.saturating_sub(page_bits);
        let pages = (0..page_count).map(|_| OnceLock::new()).collect();

        Ok(PeerTable {
            inner: Arc::new(Inner {
                network,
                local,
                slot_bits,
                page_bits,
                pages,
                others: RwLock::new(Vec::new()),
                others_present: AtomicBool::new(false),
                entries: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// Returns the overlay network this table covers.
    pub fn network(&self) -> Ipv4Net {
        self.inner.network
    }

    /// Returns this host's lease, which no peer may overlap.
    pub fn local_lease(&self) -> Ipv4Net {
        self.inner.local
    }

    /// Adds a peer or changes its PublicIP.
    pub fn upsert(&self, subnet: Ipv4Net, public_ip: Ipv4Addr) -> Result<(), PeerError> {
        self.validate(subnet, public_ip)?;
        let mut entries = self.lock_entries();
        let previous = entries.insert(subnet, public_ip);
        if !self.store_slot(subnet, Some(public_ip)) && previous != Some(public_ip) {
            self.rebuild_others(&entries);
        }
        Ok(())
    }

    /// Removes the peer with this subnet; returns whether it was present.
    pub fn remove(&self, subnet: Ipv4Net) -> bool {
        let mut entries = self.lock_entries();
        if entries.remove(&subnet).is_none() {
            return false;
        }
        if !self.store_slot(subnet, None) {
            self.rebuild_others(&entries);
        }
        true
    }

    /// Replaces every peer with `peers`. Nothing changes when one of them is
    /// invalid. Lookups during the update see each subnet either before or
    /// after its change.
    pub fn replace_all<I>(&self, peers: I) -> Result<(), PeerError>
    where
        I: IntoIterator<Item = (Ipv4Net, Ipv4Addr)>,
    {
        let mut next = BTreeMap::new();
        for (subnet, public_ip) in peers {
            self.validate(subnet, public_ip)?;
            next.insert(subnet, public_ip);
        }

        let mut entries = self.lock_entries();
        for subnet in entries.keys() {
            if !next.contains_key(subnet) {
                self.store_slot(*subnet, None);
            }
        }
        for (subnet, public_ip) in &next {
            self.store_slot(*subnet, Some(*public_ip));
        }
        *entries = next;
        self.rebuild_others(&entries);
        Ok(())
    }

    /// Returns the number of peers.
    pub fn len(&self) -> usize {
        self.lock_entries().len()
    }

    /// Returns whether the table has no peers.
    pub fn is_empty(&self) -> bool {
        self.lock_entries().is_empty()
    }

    /// Returns every peer as (subnet, PublicIP), ordered by subnet.
    pub fn snapshot(&self) -> Vec<(Ipv4Net, Ipv4Addr)> {
        self.lock_entries()
            .iter()
            .map(|(subnet, ip)| (*subnet, *ip))
            .collect()
    }

    /// Returns the PublicIP of the peer whose subnet contains `addr`.
    #[inline]
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<Ipv4Addr> {
        let inner = &*self.inner;
        if inner.others_present.load(Ordering::Acquire) {
            if let Some(ip) = inner.lookup_other(addr) {
                return Some(ip);
            }
        }

        let index = inner.slot_index(addr)?;
        let page = inner.pages.get(index >> inner.page_bits)?.get()?;
        let value = page[index & ((1 << inner.page_bits) - 1)].load(Ordering::Relaxed);
        (value != 0).then(|| Ipv4Addr::from(value))
    }

    fn validate(&self, subnet: Ipv4Net, public_ip: Ipv4Addr) -> Result<(), PeerError> {
        if public_ip.is_unspecified() || public_ip.is_broadcast() || public_ip.is_multicast() {
            return Err(PeerError::InvalidPublicIp { subnet, public_ip });
        }
        if subnet.trunc() != subnet {
            return Err(PeerError::HostBitsSet { subnet });
        }
        let local = self.inner.local;
        if subnet.contains(&local) || local.contains(&subnet) {
            return Err(PeerError::OverlapsLocalLease { subnet, local });
        }
        Ok(())
    }

    /// Stores (or clears) a subnet's slot; returns false when the subnet does
    /// not fit a slot and belongs in the list of others.
    fn store_slot(&self, subnet: Ipv4Net, public_ip: Option<Ipv4Addr>) -> bool {
        let inner = &*self.inner;
        if subnet.prefix_len() != inner.local.prefix_len() {
            return false;
        }
        let Some(index) = inner.slot_index(subnet.network()) else {
            return false;
        };

        let page_index = index >> inner.page_bits;
        let slot = index & ((1 << inner.page_bits) - 1);
        let value = public_ip.map_or(0, u32::from);
        match inner.pages[page_index].get() {
            Some(page) => page[slot].store(value, Ordering::Relaxed),
            None if value == 0 => {}
            None => {
                let page = inner.pages[page_index].get_or_init(|| {
                    (0..1usize << inner.page_bits)
                        .map(|_| AtomicU32::new(0))
                        .collect()
                });
                page[slot].store(value, Ordering::Relaxed);
            }
        }
        true
    }

    fn rebuild_others(&self, entries: &BTreeMap<Ipv4Net, Ipv4Addr>) {
        let inner = &*self.inner;
        let mut others: Vec<(Ipv4Net, Ipv4Addr)> = entries
            .iter()
            .filter(|(subnet, _)| {
                subnet.prefix_len() != inner.local.prefix_len()
                    || inner.slot_index(subnet.network()).is_none()
            })
            .map(|(subnet, ip)| (*subnet, *ip))
            .collect();
        others.sort_by_key(|(subnet, _)| std::cmp::Reverse(subnet.prefix_len()));

        let present = !others.is_empty();
        *inner.others.write().unwrap_or_else(PoisonError::into_inner) = others;
        inner.others_present.store(present, Ordering::Release);
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<Ipv4Net, Ipv4Addr>> {
        // The map is only changed by whole-map operations that cannot panic
        // halfway, so a poisoned lock still guards a consistent map.
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    #[inline]
    fn slot_index(&self, addr: Ipv4Addr) -> Option<usize> {
        if !self.network.contains(&addr) {
            return None;
        }
        let offset = u32::from(addr) - u32::from(self.network.network());
        let host_bits = 32 - u32::from(self.local.prefix_len());
        // `checked_shr` covers a /32 network, where the offset is always 0.
        let index = offset.checked_shr(host_bits).unwrap_or(0);
        debug_assert!(u64::from(index) < 1u64 << self.slot_bits);
        Some(index as usize)
    }

    fn lookup_other(&self, addr: Ipv4Addr) -> Option<Ipv4Addr> {
        let others = self.others.read().unwrap_or_else(PoisonError::into_inner);
        others
            .iter()
            .find(|(subnet, _)| subnet.contains(&addr))
            .map(|(_, ip)| *ip)
    }
}

impl PeerLookup for PeerTable {
    #[inline]
    fn peer_for(&self, addr: Ipv4Addr) -> Option<Ipv4Addr> {
        self.lookup(addr)
    }
}
