//! The queue discipline shared by the server's batch writers: a writer waits for the first job
//! only, then takes whatever else is queued, up to a limit. Nobody waits for a batch to fill,
//! so under light load a batch is one job, and under heavy load batches grow by themselves.

use pesachama_store::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, PgConnection, Postgres};
use tokio::sync::{Mutex, mpsc};

/// The next batch: the first job (waited for), then at most `max - 1` more that are already
/// queued. `None` once every sender is gone. When nothing is queued (the writer is about to
/// wait), the writer's connection goes back to the pool first.
pub async fn next_batch<T>(
    jobs: &Mutex<mpsc::Receiver<T>>,
    max: usize,
    held: &mut HeldConnection,
) -> Option<Vec<T>> {
    let mut jobs = jobs.lock().await;
    if jobs.is_empty() {
        held.give_back();
    }
    let first = jobs.recv().await?;
    let mut batch = vec![first];
    while batch.len() < max {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// A pool connection that a batch writer keeps while work follows work. The pool checks every
/// connection given back to it with a round trip (sqlx pings it), so a writer that takes a
/// connection for each batch pays one more round trip per batch; under load its batches are
/// small (a few jobs each). On the STK benchmark the pool's pings were 13 % of the benchmark
/// process's samples (BENCHMARKS.md, 2026-12-02, evening). The connection goes back to the
/// pool when the writer runs out of work.
#[derive(Debug)]
pub struct HeldConnection {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
}

impl HeldConnection {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, conn: None }
    }

    /// The held connection, taken from the pool if none is held.
    pub async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        Ok(&mut **self.conn.insert(conn))
    }

    /// Runs `work` on the held connection (taken from the pool if none is held); after an
    /// error, waits as [`Self::after_error`] does.
    pub async fn run<R, E: From<sqlx::Error>>(
        &mut self,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<R, E>,
    ) -> Result<R, E> {
        let done = work(self.get().await?).await;
        if done.is_err() {
            self.after_error().await;
        }
        done
    }

    /// Gives the connection back to the pool (if one is held).
    pub fn give_back(&mut self) {
        self.conn = None;
    }

    /// After a statement on the held connection failed: waits until the server is ready for
    /// the next, so the failed statement's transaction is rolled back and its locks are let go
    /// before anything is retried elsewhere (the server reports an error before it has rolled
    /// back). A connection that does not answer goes back to the pool, which closes it.
    pub async fn after_error(&mut self) {
        if let Some(conn) = self.conn.as_mut()
            && conn.ping().await.is_err()
        {
            self.conn = None;
        }
    }
}

/// Locks `mutex`, past a panic of an earlier holder: the data these locks guard is left as
/// consistent as any step of their updates.
pub(crate) fn unpoisoned<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Work that several appliers share, each job under a key (for the STK applier, its chama): an
/// applier claims whole keys, so two appliers never hold the same key at once, and the jobs of
/// one key are handed out in the order they were offered. An applier that finishes releases
/// its keys and claims again; nobody waits for the slowest applier of a round.
#[derive(Debug)]
pub struct KeyedBoard<K, T> {
    state: std::sync::Mutex<BoardState<K, T>>,
    changed: tokio::sync::Notify,
    appliers: usize,
    max: usize,
    capacity: usize,
}

#[derive(Debug)]
struct BoardState<K, T> {
    waiting: std::collections::VecDeque<(K, T)>,
    /// Keys an applier holds.
    held: std::collections::HashSet<K>,
    /// Appliers holding a claim.
    applying: usize,
    closed: bool,
}

/// What an applier claimed: its jobs, in order, and the keys to release after them.
#[derive(Debug)]
pub struct Claim<K, T> {
    pub jobs: Vec<T>,
    keys: Vec<K>,
}

impl<K: Clone + Eq + std::hash::Hash, T> KeyedBoard<K, T> {
    /// A board for `appliers` appliers, each claiming at most `max` jobs. An offer waits while
    /// `capacity` jobs or more are waiting (then adds all of its jobs).
    pub fn new(appliers: usize, max: usize, capacity: usize) -> Self {
        Self {
            state: std::sync::Mutex::new(BoardState {
                waiting: std::collections::VecDeque::new(),
                held: std::collections::HashSet::new(),
                applying: 0,
                closed: false,
            }),
            changed: tokio::sync::Notify::new(),
            appliers: appliers.max(1),
            max: max.max(1),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState<K, T>> {
        unpoisoned(&self.state)
    }

    /// Offers jobs, waiting while the board is full.
    pub async fn offer(&self, jobs: Vec<(K, T)>) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.waiting.len() < self.capacity {
                    state.waiting.extend(jobs);
                    drop(state);
                    self.changed.notify_waiters();
                    return;
                }
            }
            notified.await;
        }
    }

    /// No more jobs will be offered: appliers end once the board is empty.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// The next claim, waited for; `None` once the board is closed and empty. An applier that
    /// keeps a connection between claims gives it back to the pool before it waits for work.
    pub async fn claim(&self, mut held: Option<&mut HeldConnection>) -> Option<Claim<K, T>> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(claim) = state.claim(self.appliers, self.max) {
                    drop(state);
                    // Room on the board for an offer that was waiting.
                    self.changed.notify_waiters();
                    return Some(claim);
                }
                if state.closed && state.waiting.is_empty() {
                    return None;
                }
            }
            if let Some(held) = held.as_deref_mut() {
                held.give_back();
            }
            notified.await;
        }
    }

    /// The claim's jobs are done: its keys are free for any applier.
    pub fn release(&self, claim: Claim<K, T>) {
        {
            let mut state = self.lock();
            for key in &claim.keys {
                state.held.remove(key);
            }
            state.applying -= 1;
        }
        self.changed.notify_waiters();
    }
}

impl<K: Clone + Eq + std::hash::Hash, T> BoardState<K, T> {
    /// Claims the jobs of whole free keys, in the order the keys first appear: about the
    /// waiting jobs' share of each idle applier (so one applier does not take every key while
    /// another is idle), at most `max`, at least one key's jobs.
    fn claim(&mut self, appliers: usize, max: usize) -> Option<Claim<K, T>> {
        // The free keys in order of first appearance, with their waiting jobs.
        let mut free: Vec<(K, usize)> = Vec::new();
        let mut at: std::collections::HashMap<&K, usize> = std::collections::HashMap::new();
        for (key, _) in &self.waiting {
            if self.held.contains(key) {
                continue;
            }
            match at.get(key) {
                Some(&i) => free[i].1 += 1,
                None => {
                    at.insert(key, free.len());
                    free.push((key.clone(), 1));
                }
            }
        }
        drop(at);
        if free.is_empty() {
            return None;
        }
        let claimable: usize = free.iter().map(|(_, n)| n).sum();
        let idle = appliers.saturating_sub(self.applying).max(1);
        let share = claimable.div_ceil(idle).min(max);
        let mut keys = Vec::new();
        let mut taken = 0;
        for (key, n) in free {
            if !keys.is_empty() && (taken >= share || taken + n > max) {
                break;
            }
            taken += n;
            keys.push(key);
        }
        let claimed: std::collections::HashSet<&K> = keys.iter().collect();
        let mut jobs = Vec::with_capacity(taken.min(max));
        let mut kept = std::collections::VecDeque::with_capacity(self.waiting.len());
        for (key, job) in self.waiting.drain(..) {
            if jobs.len() < max && claimed.contains(&key) {
                jobs.push(job);
            } else {
                kept.push_back((key, job));
            }
        }
        drop(claimed);
        self.waiting = kept;
        self.held.extend(keys.iter().cloned());
        self.applying += 1;
        Some(Claim { jobs, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(jobs: &[(char, u32)]) -> BoardState<char, u32> {
        BoardState {
            waiting: jobs.iter().copied().collect(),
            held: Default::default(),
            applying: 0,
            closed: false,
        }
    }

    #[test]
    fn idle_appliers_split_the_keys_and_never_share_one() {
        let mut state = board(&[('a', 1), ('b', 2), ('c', 3), ('a', 4), ('d', 5), ('b', 6)]);
        let first = state.claim(2, 100).unwrap();
        // Half the six jobs for each of two idle appliers: keys a and b (four jobs).
        assert_eq!(first.jobs, [1, 2, 4, 6]);
        let second = state.claim(2, 100).unwrap();
        assert_eq!(second.jobs, [3, 5]);
        assert!(first.keys.iter().all(|k| !second.keys.contains(k)));
        // A job offered for a held key waits for its holder to release it.
        state.waiting.push_back(('a', 7));
        assert!(state.claim(2, 100).is_none());
        state.held.retain(|k| !first.keys.contains(k));
        state.applying -= 1;
        assert_eq!(state.claim(2, 100).unwrap().jobs, [7]);
    }

    #[test]
    fn the_only_idle_applier_takes_every_free_key_up_to_the_limit() {
        let mut state = board(&[('a', 1), ('b', 2), ('c', 3), ('c', 4)]);
        state.applying = 1;
        state.held.insert('z');
        assert_eq!(state.claim(2, 100).unwrap().jobs, [1, 2, 3, 4]);

        let mut state = board(&[('a', 1), ('b', 2), ('c', 3), ('c', 4)]);
        // At most three: whole keys while they fit (c's two would not).
        assert_eq!(state.claim(1, 3).unwrap().jobs, [1, 2]);
        // One key with more jobs than the limit: its first ones, in order.
        let mut state = board(&[('a', 1), ('a', 2), ('a', 3)]);
        let claim = state.claim(1, 2).unwrap();
        assert_eq!(claim.jobs, [1, 2]);
        assert_eq!(state.waiting.iter().map(|j| j.1).collect::<Vec<_>>(), [3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn concurrent_appliers_hold_disjoint_keys_and_keep_each_keys_order() {
        let board = std::sync::Arc::new(KeyedBoard::<u8, (u8, u32)>::new(3, 5, 16));
        let held = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut appliers = Vec::new();
        for _ in 0..3 {
            let (board, held, seen) = (board.clone(), held.clone(), seen.clone());
            appliers.push(tokio::spawn(async move {
                while let Some(claim) = board.claim(None).await {
                    let keys: std::collections::HashSet<u8> =
                        claim.jobs.iter().map(|j| j.0).collect();
                    for key in &keys {
                        assert!(held.lock().unwrap().insert(*key), "key {key} held twice");
                    }
                    tokio::task::yield_now().await;
                    seen.lock().unwrap().extend(claim.jobs.iter().copied());
                    for key in &keys {
                        held.lock().unwrap().remove(key);
                    }
                    board.release(claim);
                }
            }));
        }
        for n in 0..200u32 {
            board.offer(vec![((n % 7) as u8, ((n % 7) as u8, n))]).await;
        }
        board.close();
        // A failing applier leaves its claim held and the others waiting: fail, not hang.
        for applier in appliers {
            tokio::time::timeout(std::time::Duration::from_secs(30), applier)
                .await
                .expect("the appliers finish")
                .unwrap();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 200);
        for key in 0..7u8 {
            let order: Vec<u32> = seen.iter().filter(|j| j.0 == key).map(|j| j.1).collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "key {key}: {order:?}"
            );
        }
    }
}
