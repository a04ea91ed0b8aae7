//! The node's in-memory view of slowly changing shared state: terminals, the deny list and the
//! issuer key ring. Each is an immutable snapshot behind a lock that is only held to swap or clone
//! an `Arc`, so the hot path never waits on the database. Snapshots are re-read from the database
//! every `taps.refresh_interval_ms` (changes made through another node take effect within that
//! bound) and immediately after a change made through this node.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use turnpike_wire::ridecode::{DenyList, IssuerKeyPair, IssuerPublicKey, Verifier, VerifyPolicy};

use crate::clock::Clock;
use crate::store::{IssuerKeyRow, Store, TerminalRow};
use crate::store::{KeyStatus, TerminalStatus};
use crate::tls::TerminalGate;

/// The issuer key ring: the current key signs new credentials; current and previous keys verify.
pub struct KeyRing {
    pub current: IssuerKeyPair,
    pub verifier: Verifier,
    pub public_keys: Vec<IssuerPublicKey>,
    /// The (key id, status) pairs this ring was built from.
    state: Vec<(i64, KeyStatus)>,
}

pub struct Registry {
    terminals: RwLock<Arc<HashMap<String, TerminalRow>>>,
    deny: RwLock<Arc<DenyList>>,
    keys: RwLock<Arc<KeyRing>>,
    policy: VerifyPolicy,
    credential_cache_max: usize,
    /// Stamps a key staged or promoted when a database has none yet.
    clock: Clock,
    /// One refresh at a time, so a periodic refresh that read the database before an admin's
    /// change cannot store its older snapshot after the admin's own refresh.
    refreshing: tokio::sync::Mutex<()>,
}

fn read<T>(lock: &RwLock<Arc<T>>) -> Arc<T> {
    // A poisoned lock only means a writer panicked while swapping an Arc; the Arc is intact.
    lock.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn swap<T>(lock: &RwLock<Arc<T>>, value: T) {
    *lock.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
}

impl Registry {
    /// Loads everything; creates the first issuer key if the database has none.
    /// `credential_cache_max` bounds the verifier's cache of verified credentials.
    pub async fn load(
        store: &Store,
        policy: VerifyPolicy,
        credential_cache_max: usize,
        clock: Clock,
    ) -> anyhow::Result<Registry> {
        let keys = load_key_ring(store, policy, credential_cache_max, &clock).await?;
        let registry = Registry {
            terminals: RwLock::new(Arc::new(HashMap::new())),
            deny: RwLock::new(Arc::new(DenyList::default())),
            keys: RwLock::new(Arc::new(keys)),
            policy,
            credential_cache_max,
            clock,
            refreshing: tokio::sync::Mutex::new(()),
        };
        registry.refresh(store).await?;
        Ok(registry)
    }

    pub async fn refresh(&self, store: &Store) -> anyhow::Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let terminals = store
            .terminals()
            .await?
            .into_iter()
            .map(|t| (t.terminal_id.clone(), t))
            .collect();
        swap(&self.terminals, terminals);
        let mut deny = DenyList::default();
        for row in store.deny_list().await? {
            let id = row.subject_id as u64;
            match row.subject_kind.as_str() {
                "credential" => deny.credentials.insert(id),
                _ => deny.riders.insert(id),
            };
        }
        swap(&self.deny, deny);
        // Rebuild the key ring only when the keys changed, so the verifier's credential cache
        // survives refreshes and is dropped exactly when the accepted key set changes.
        let rows = store.issuer_keys().await?;
        if ring_state(&rows) != read(&self.keys).state {
            swap(
                &self.keys,
                load_key_ring(store, self.policy, self.credential_cache_max, &self.clock).await?,
            );
        }
        Ok(())
    }

    pub fn terminal(&self, terminal_id: &str) -> Option<TerminalRow> {
        read(&self.terminals).get(terminal_id).cloned()
    }

    pub fn deny_list(&self) -> Arc<DenyList> {
        read(&self.deny)
    }

    pub fn keys(&self) -> Arc<KeyRing> {
        read(&self.keys)
    }
}

impl TerminalGate for Registry {
    fn is_active(&self, terminal_id: &str) -> bool {
        read(&self.terminals)
            .get(terminal_id)
            .is_some_and(|t| t.status == TerminalStatus::Active)
    }
}

/// What identifies a key ring: each key's id and status.
fn ring_state(rows: &[IssuerKeyRow]) -> Vec<(i64, KeyStatus)> {
    rows.iter().map(|r| (r.key_id, r.status)).collect()
}

async fn load_key_ring(
    store: &Store,
    policy: VerifyPolicy,
    credential_cache_max: usize,
    clock: &Clock,
) -> anyhow::Result<KeyRing> {
    let mut rows = store.issuer_keys().await?;
    if !rows.iter().any(|r| r.status == KeyStatus::Current) {
        // First start: stage key 1 and promote it. If another node races us, its insert wins
        // (same key id) and our promotion finds nothing staged; either way we re-read.
        if !rows.iter().any(|r| r.status == KeyStatus::Next) {
            let _ = store
                .stage_issuer_key(&new_issuer_key(next_key_id(&rows))?, clock.now_ms())
                .await;
        }
        let _ = store.rotate_issuer_key(clock.now_ms()).await;
        rows = store.issuer_keys().await?;
    }
    let current_row = rows
        .iter()
        .find(|r| r.status == KeyStatus::Current)
        .context("no current issuer key")?;
    let current = IssuerKeyPair::from_pkcs8(current_row.key_id as u16, &current_row.pkcs8)
        .map_err(|e| anyhow::anyhow!("issuer key {}: {e}", current_row.key_id))?;
    let public_keys: Vec<IssuerPublicKey> = rows
        .iter()
        .filter(|r| r.status != KeyStatus::Retired)
        .map(|r| {
            IssuerPublicKey::new(r.key_id as u16, &r.public_key)
                .map_err(|e| anyhow::anyhow!("issuer key {}: {e}", r.key_id))
        })
        .collect::<anyhow::Result<_>>()?;
    let verifier = Verifier::new(public_keys.iter().cloned(), policy)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_credential_cache(credential_cache_max);
    Ok(KeyRing {
        current,
        verifier,
        public_keys,
        state: ring_state(&rows),
    })
}

pub fn next_key_id(rows: &[IssuerKeyRow]) -> i64 {
    rows.iter().map(|r| r.key_id).max().unwrap_or(0) + 1
}

pub fn new_issuer_key(key_id: i64) -> anyhow::Result<IssuerKeyRow> {
    anyhow::ensure!(
        (1..=65535).contains(&key_id),
        "issuer key ids are exhausted"
    );
    let pkcs8 = IssuerKeyPair::generate_pkcs8()
        .map_err(|e| anyhow::anyhow!("generating issuer key: {e}"))?;
    let pair =
        IssuerKeyPair::from_pkcs8(key_id as u16, &pkcs8).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(IssuerKeyRow {
        key_id,
        pkcs8,
        public_key: pair.public_key().public_key().to_vec(),
        status: KeyStatus::Next,
        activated_at_ms: None,
    })
}
