//! The per-process hub: the channels joined on this server's sockets, the LISTEN task that
//! receives every committed change of the database, and the fan-out.
//!
//! Fan-out of a batch of changes costs a few queries whatever the number of subscribers: one
//! read of the changed rows per table, one call of `internal.realtime_audience` that names the
//! users each change can concern (the row's user, the members of its chama), and up to four
//! concurrent calls of `internal.realtime_visible` that ask RLS, for every distinct identity
//! among the interested subscribers in that audience, which of those rows it may SELECT. Subscribers are grouped by
//! what RLS can tell apart ([`Identity::rls_key`]), so a user with three tabs open costs one
//! check, and a subscriber whose filter, table or audience does not match costs none: a
//! thousand users on the whole of `transactions` cost, per change, the checks of the fifty
//! members of its chama.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use pesachama_auth::TokenVerifier;
use pesachama_store::PgPool;
use pesachama_store::realtime::{self as store, Change, ChangeListener, Notice};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, mpsc};
use uuid::Uuid;

use crate::identity::Identity;
use crate::join::{Binding, Catalog};
use crate::payload::{ChangeView, postgres_changes};
use crate::protocol::Frame;

/// How the hub is configured.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    pub pool: PgPool,
    /// Verifies API keys and access tokens (the server's own verifier).
    pub verifier: TokenVerifier,
    /// Opaque API keys accepted besides JWTs (`sb_publishable_...` anon, `sb_secret_...` service).
    pub opaque_api_keys: Vec<String>,
    /// Largest frame accepted, in bytes; larger frames are refused with an error message and
    /// the connection stays open (four times this closes it, code 1009).
    pub max_frame_bytes: usize,
    /// Frames waiting for a slow client before it is disconnected.
    pub send_queue: usize,
    /// Whether a signed-in token's session still speaks for its user (not logged out, banned
    /// or deleted); asked at every join and token refresh. `None` trusts the signature alone.
    pub live_check: Option<LiveCheck>,
}

/// Asks, for (user, session), whether the session still speaks for the user: `Err` carries
/// the reason the channel is refused.
#[derive(Clone)]
pub struct LiveCheck(Arc<LiveCheckFn>);

type LiveCheckFn =
    dyn Fn(Uuid, Uuid) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync;

impl LiveCheck {
    pub fn new(
        check: impl Fn(Uuid, Uuid) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self(Arc::new(check))
    }

    pub async fn check(&self, user: Uuid, session: Uuid) -> Result<(), String> {
        (self.0)(user, session).await
    }
}

impl std::fmt::Debug for LiveCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveCheck")
    }
}

impl RealtimeConfig {
    pub fn new(pool: PgPool, verifier: TokenVerifier) -> Self {
        Self {
            pool,
            verifier,
            opaque_api_keys: Vec::new(),
            max_frame_bytes: 1024 * 1024,
            send_queue: 1024,
            live_check: None,
        }
    }

    pub fn with_live_check(mut self, check: LiveCheck) -> Self {
        self.live_check = Some(check);
        self
    }

    pub fn with_opaque_keys(mut self, keys: Vec<String>) -> Self {
        self.opaque_api_keys = keys;
        self
    }
}

/// A joined channel, as the fan-out sees it.
#[derive(Debug)]
pub struct ChannelEntry {
    pub key: u64,
    pub topic: String,
    pub join_ref: Option<String>,
    pub bindings: Vec<Binding>,
    pub broadcast_self: bool,
    /// Broadcasts are acknowledged with a `phx_reply` (`broadcast.ack`).
    pub broadcast_ack: bool,
    /// Replaced by `access_token` events.
    pub identity: RwLock<Arc<Identity>>,
    pub outbox: mpsc::Sender<Frame>,
    /// Set when a frame could not be queued: the socket task then closes the connection.
    pub overflowed: AtomicBool,
}

impl ChannelEntry {
    pub fn identity(&self) -> Arc<Identity> {
        self.identity
            .read()
            .map(|i| Arc::clone(&i))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Queues a frame. A client too slow to take its frames is never waited for: the frame is
    /// dropped and its socket task closes the connection, so the client reconnects and knows
    /// it may have missed changes.
    pub fn deliver(&self, frame: Frame) {
        if self.outbox.try_send(frame).is_err() {
            self.overflowed.store(true, Ordering::Relaxed);
            tracing::warn!(topic = %self.topic, "realtime client too slow; frame dropped");
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    channels: BTreeMap<u64, Arc<ChannelEntry>>,
    by_topic: HashMap<String, Vec<u64>>,
}

/// The hub of one server process.
#[derive(Debug)]
pub struct Hub {
    pub config: RealtimeConfig,
    catalog: OnceCell<Arc<Catalog>>,
    registry: RwLock<Registry>,
    next_key: AtomicU64,
    /// This process, as other processes see its broadcasts.
    origin: Uuid,
    /// Broadcasts to pass to the other processes, in the order they were sent.
    outgoing: std::sync::OnceLock<mpsc::UnboundedSender<(String, Value)>>,
}

/// Changes taken from the listener at once, at most.
const BATCH: usize = 500;

impl Hub {
    pub fn new(config: RealtimeConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            catalog: OnceCell::new(),
            registry: RwLock::new(Registry::default()),
            next_key: AtomicU64::new(1),
            origin: Uuid::new_v4(),
            outgoing: std::sync::OnceLock::new(),
        })
    }

    /// The publication, after the LISTEN connection is up: a channel subscribed once this
    /// returns sees every change committed from then on. Started on first use, so building the
    /// router needs no database; retried on the next join if the database was unreachable.
    pub async fn started(self: &Arc<Self>) -> Result<Arc<Catalog>, String> {
        self.catalog
            .get_or_try_init(|| async {
                let tables = store::published_tables(&self.config.pool)
                    .await
                    .map_err(|err| format!("cannot read the realtime publication: {err}"))?;
                let mut catalog = Catalog::default();
                for table in tables {
                    catalog
                        .tables
                        .insert((table.schema, table.table), table.columns);
                }
                let listener = ChangeListener::connect(&self.config.pool)
                    .await
                    .map_err(|err| format!("cannot listen for changes: {err}"))?;
                tokio::spawn(listen(Arc::downgrade(self), listener));
                let (outgoing, queue) = mpsc::unbounded_channel();
                let _ = self.outgoing.set(outgoing);
                tokio::spawn(publish(self.config.pool.clone(), self.origin, queue));
                Ok(Arc::new(catalog))
            })
            .await
            .cloned()
    }

    pub fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register(&self, entry: Arc<ChannelEntry>) {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        registry
            .by_topic
            .entry(entry.topic.clone())
            .or_default()
            .push(entry.key);
        registry.channels.insert(entry.key, entry);
    }

    pub fn unregister(&self, key: u64) {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = registry.channels.remove(&key)
            && let Some(keys) = registry.by_topic.get_mut(&entry.topic)
        {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                registry.by_topic.remove(&entry.topic);
            }
        }
    }

    /// Channels joined on this process (for tests and metrics).
    pub fn channel_count(&self) -> usize {
        self.registry
            .read()
            .map(|r| r.channels.len())
            .unwrap_or_default()
    }

    /// Sends a client's broadcast to the other clients of its topic on this process (and back
    /// to the sender when it joined with `broadcast.self`), then to the other processes.
    pub fn broadcast(&self, from: &ChannelEntry, payload: &Value) {
        for target in self.on_topic(&from.topic) {
            if target.key != from.key || from.broadcast_self {
                target.deliver(Frame::new(&from.topic, "broadcast", payload.clone()));
            }
        }
        if let Some(outgoing) = self.outgoing.get() {
            let _ = outgoing.send((from.topic.clone(), payload.clone()));
        }
    }

    /// A broadcast another process passed on: to every client of its topic here.
    async fn relay(&self, broadcast: store::Broadcast) {
        if broadcast.origin == self.origin {
            return;
        }
        let targets = self.on_topic(&broadcast.topic);
        if targets.is_empty() {
            return;
        }
        let payload = match (broadcast.payload, broadcast.stored) {
            (Some(payload), _) => payload,
            (None, Some(id)) => match store::stored_broadcast(&self.config.pool, id).await {
                Ok(Some(payload)) => payload,
                Ok(None) => {
                    tracing::warn!(id, "a relayed broadcast was swept before it was read");
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, id, "cannot read a relayed broadcast");
                    return;
                }
            },
            (None, None) => return,
        };
        for target in targets {
            target.deliver(Frame::new(&broadcast.topic, "broadcast", payload.clone()));
        }
    }

    fn on_topic(&self, topic: &str) -> Vec<Arc<ChannelEntry>> {
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        registry
            .by_topic
            .get(topic)
            .into_iter()
            .flatten()
            .filter_map(|key| registry.channels.get(key).cloned())
            .collect()
    }

    fn snapshot(&self) -> Vec<Arc<ChannelEntry>> {
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        registry
            .channels
            .values()
            .filter(|c| !c.bindings.is_empty())
            .cloned()
            .collect()
    }

    /// Delivers one batch of committed changes to the channels that may see them.
    pub async fn fan_out(&self, changes: &[Change]) -> Result<(), String> {
        let Some(catalog) = self.catalog.get() else {
            return Ok(());
        };
        let channels = self.snapshot();
        if channels.is_empty() || changes.is_empty() {
            return Ok(());
        }
        let records = self.current_records(changes, catalog).await?;

        // Which channel wants which change, and through which of its bindings.
        let mut wanted: Vec<(Arc<ChannelEntry>, usize, Vec<u64>)> = Vec::new();
        for (index, change) in changes.iter().enumerate() {
            let deleted;
            let record = if change.op == "DELETE" {
                deleted = json!({ "id": change.id, "chama_id": change.chama_id,
                                  "user_id": change.user_id });
                &deleted
            } else {
                match records.get(&(change.table.clone(), change.id)) {
                    Some(record) => record,
                    None => continue, // gone before we read it; its DELETE follows
                }
            };
            for channel in &channels {
                let ids: Vec<u64> = channel
                    .bindings
                    .iter()
                    .filter(|b| {
                        b.covers(&change.schema, &change.table)
                            && b.event.wants(&change.op)
                            && b.filter.as_ref().is_none_or(|f| f.matches(record))
                    })
                    .map(|b| b.id)
                    .collect();
                if !ids.is_empty() {
                    wanted.push((channel.clone(), index, ids));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }

        // Whom each change can concern at all (its scope: the row's user, its chama's members),
        // asked once for the batch; RLS is asked only about identities in that audience.
        // The batch as both queries take it: for a DELETE, `c` and `u` are what the
        // notification carried; otherwise what the row read holds.
        let batch = Value::Array(
            changes
                .iter()
                .map(|c| {
                    let (chama, user) = subject(c, records.get(&(c.table.clone(), c.id)));
                    json!({ "s": c.schema, "t": c.table, "op": c.op, "id": c.id,
                            "c": chama, "u": user })
                })
                .collect(),
        );
        let listeners: Vec<Arc<Identity>> = wanted.iter().map(|(c, _, _)| c.identity()).collect();
        let needs_audience = listeners.iter().any(|i| i.user_id().is_some());
        let audience: HashSet<(usize, Uuid)> = if needs_audience {
            store::audience(&self.config.pool, &batch)
                .await
                .map_err(|err| format!("the audience query failed: {err}"))?
                .into_iter()
                .collect()
        } else {
            HashSet::new()
        };

        // One RLS check per distinct identity, for the whole batch.
        let mut identity_index: HashMap<String, usize> = HashMap::new();
        let mut identities: Vec<Value> = Vec::new();
        let mut wants: Vec<std::collections::BTreeSet<usize>> = Vec::new();
        let mut gates: Vec<Gate> = Vec::with_capacity(wanted.len());
        for ((_, change, _), identity) in wanted.iter().zip(&listeners) {
            if identity.bypasses_rls() {
                gates.push(Gate::Open);
                continue;
            }
            if identity
                .user_id()
                .is_some_and(|user| !audience.contains(&(*change, user)))
            {
                gates.push(Gate::Closed);
                continue;
            }
            let next = identities.len();
            let index = *identity_index.entry(identity.rls_key()).or_insert(next);
            if index == next {
                identities.push(identity.to_check());
                wants.push(std::collections::BTreeSet::new());
            }
            wants[index].insert(*change);
            gates.push(Gate::Checked(index));
        }
        // Each identity is checked only against the changes its subscriptions want.
        for (identity, want) in identities.iter_mut().zip(&wants) {
            identity["w"] = json!(want);
        }
        let visible = if identities.is_empty() {
            HashSet::new()
        } else {
            check_visibility(&self.config.pool, identities, batch).await?
        };

        for ((channel, index, ids), gate) in wanted.into_iter().zip(gates) {
            let admitted = match gate {
                Gate::Open => true,
                Gate::Closed => false,
                Gate::Checked(identity) => visible.contains(&(identity, index)),
            };
            if !admitted {
                continue;
            }
            let change = &changes[index];
            let record = records.get(&(change.table.clone(), change.id));
            let columns = catalog
                .columns(&change.schema, &change.table)
                .unwrap_or(&[]);
            let payload = postgres_changes(
                &ids,
                &ChangeView {
                    schema: &change.schema,
                    table: &change.table,
                    op: &change.op,
                    id: change.id,
                    at: &change.ts,
                    record: if change.op == "DELETE" { None } else { record },
                    columns,
                },
            );
            let mut frame = Frame::new(&channel.topic, "postgres_changes", payload);
            frame.join_ref = channel.join_ref.clone();
            channel.deliver(frame);
        }
        Ok(())
    }

    /// The rows of the batch's inserts and updates, one query per table.
    async fn current_records(
        &self,
        changes: &[Change],
        catalog: &Catalog,
    ) -> Result<HashMap<(String, Uuid), Value>, String> {
        let mut by_table: BTreeMap<(&str, &str), Vec<Uuid>> = BTreeMap::new();
        for change in changes.iter().filter(|c| c.op != "DELETE") {
            // Only published tables reach a query; a forged notification names nothing else.
            if catalog.columns(&change.schema, &change.table).is_some() {
                by_table
                    .entry((&change.schema, &change.table))
                    .or_default()
                    .push(change.id);
            }
        }
        let mut records = HashMap::new();
        for ((schema, table), ids) in by_table {
            let rows = store::current_rows(&self.config.pool, schema, table, &ids)
                .await
                .map_err(|err| format!("cannot read {schema}.{table}: {err}"))?;
            records.extend(
                rows.into_iter()
                    .map(|(id, row)| ((table.to_owned(), id), row)),
            );
        }
        Ok(records)
    }
}

/// Whether a subscriber gets a change: without asking (the service role), never (outside the
/// change's audience), or as RLS answers for the identity at this index.
enum Gate {
    Open,
    Closed,
    Checked(usize),
}

/// The chama and user a change concerns: from the row read after the change, or for a DELETE
/// from the notification (the row is gone).
fn subject(change: &Change, record: Option<&Value>) -> (Option<Uuid>, Option<Uuid>) {
    if change.op == "DELETE" {
        return (change.chama_id, change.user_id);
    }
    let field = |name: &str| {
        record
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    };
    (field("chama_id"), field("user_id"))
}

/// Identities asked about in one call of `internal.realtime_visible`; more are split over
/// several connections at once, so a large audience uses every core of the database.
const IDENTITIES_PER_CHECK: usize = 24;
/// Calls of `internal.realtime_visible` in flight for one batch, at most.
const CONCURRENT_CHECKS: usize = 4;

/// `(identity index, change index)` for every change each identity may see, as RLS answers.
async fn check_visibility(
    pool: &PgPool,
    identities: Vec<Value>,
    batch: Value,
) -> Result<HashSet<(usize, usize)>, String> {
    let per_call = identities
        .len()
        .div_ceil(CONCURRENT_CHECKS)
        .max(IDENTITIES_PER_CHECK);
    let batch = Arc::new(batch);
    let mut calls = tokio::task::JoinSet::new();
    for (part, chunk) in identities.chunks(per_call).enumerate() {
        let (pool, batch, chunk) = (pool.clone(), Arc::clone(&batch), chunk.to_vec());
        let offset = part * per_call;
        calls.spawn(async move {
            store::visible(&pool, &Value::Array(chunk), &batch)
                .await
                .map(|pairs| {
                    pairs
                        .into_iter()
                        .map(|(identity, change)| (identity + offset, change))
                        .collect::<Vec<_>>()
                })
        });
    }
    let mut visible = HashSet::new();
    while let Some(joined) = calls.join_next().await {
        let pairs = joined
            .map_err(|err| format!("the visibility check stopped: {err}"))?
            .map_err(|err| format!("the visibility check failed: {err}"))?;
        visible.extend(pairs);
    }
    Ok(visible)
}

/// Passes this process's broadcasts to the others, one at a time so they keep their order.
async fn publish(pool: PgPool, origin: Uuid, mut queue: mpsc::UnboundedReceiver<(String, Value)>) {
    while let Some((topic, payload)) = queue.recv().await {
        if let Err(err) = store::publish_broadcast(&pool, origin, &topic, &payload).await {
            tracing::warn!(%err, %topic, "a broadcast did not reach the other server processes");
        }
    }
}

/// The LISTEN loop of a hub; ends when the hub is gone.
///
/// A reader task takes notifications off the connection one by one (never cancelled halfway);
/// this loop takes everything that has arrived as one batch, so while one batch is being
/// delivered the next one gathers, and the cost per change falls as the rate rises. Broadcasts
/// from other processes are relayed as they come, ahead of the batch they arrived in.
async fn listen(hub: Weak<Hub>, mut listener: ChangeListener) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Notice>();
    let reader = tokio::spawn(async move {
        loop {
            match listener.next_notice().await {
                Ok(notice) => {
                    if tx.send(notice).is_err() {
                        return;
                    }
                }
                Err(err) => {
                    if tx.is_closed() {
                        return;
                    }
                    tracing::warn!(%err, "realtime listener lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    while let Some(first) = rx.recv().await {
        let Some(hub) = hub.upgrade() else { break };
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(notice) = next.take() {
            match notice {
                Notice::Change(change) => batch.push(change),
                Notice::Broadcast(broadcast) => hub.relay(broadcast).await,
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(err) = hub.fan_out(&batch).await {
            tracing::error!(%err, changes = batch.len(), "realtime fan-out failed");
        }
    }
    reader.abort();
}
