//! Group commit: one thread owns every write. Jobs queue on a bounded channel; the thread
//! applies as many as are waiting inside one redb write transaction, commits once (fsync), then
//! runs each job's completion in submission order. A failed commit fails every job in the
//! batch, so nothing is acknowledged that is not durable; after an I/O failure (a full disk)
//! the writer reopens the file before the next batch, so writes work again once space returns.
//! Between the last apply and the commit each job may act on what it wrote
//! ([`Job::before_commit`]): a send pushes to online recipients there, so the push does not
//! wait for the disk sync, while its sender is acknowledged only after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};

use super::{Db, StoreError, Tx, WriteFailure};
use crate::metrics::Metrics;

/// How many recent messages' senders [`WriterState`] remembers: acks come within
/// milliseconds of a push, so this covers about a second of sends at the broker's rate.
const RECENT_SENDERS: usize = 16_384;

/// State only the writer thread touches, kept consistent with committed data.
#[derive(Debug, Default)]
pub struct WriterState {
    /// Undelivered messages per mesh, then per member (looked up without allocating).
    queue_depth: HashMap<String, HashMap<String, u32>>,
    /// Sender member of the latest messages, by `mesh␟msg_id` (their record's key): a
    /// `client_ack` learns whom to send a receipt without reading the message record.
    senders: HashMap<String, String>,
    /// Keys of `senders`, oldest first (evicted past [`RECENT_SENDERS`]).
    sender_order: VecDeque<String>,
}

impl WriterState {
    /// State from the committed queue depths per (mesh, member).
    pub fn new(depths: HashMap<(String, String), u32>) -> Self {
        let mut queue_depth: HashMap<String, HashMap<String, u32>> = HashMap::new();
        for ((mesh, member), d) in depths {
            queue_depth.entry(mesh).or_default().insert(member, d);
        }
        Self { queue_depth, ..Default::default() }
    }

    /// Remembers that the message stored under `record_key` (`mesh␟msg_id`) is from `sender`.
    /// Only for a message written in this batch or earlier: a failed batch rebuilds the state.
    pub fn remember_sender(&mut self, record_key: &str, sender: &str) {
        if self.sender_order.len() >= RECENT_SENDERS
            && let Some(old) = self.sender_order.pop_front()
        {
            self.senders.remove(&old);
        }
        self.senders.insert(record_key.to_string(), sender.to_string());
        self.sender_order.push_back(record_key.to_string());
    }

    /// The sender of the message under `record_key`, if it is one of the latest.
    pub fn recent_sender(&self, record_key: &str) -> Option<&str> {
        self.senders.get(record_key).map(String::as_str)
    }

    pub fn depth(&self, mesh: &str, member: &str) -> u32 {
        self.queue_depth.get(mesh).and_then(|m| m.get(member)).copied().unwrap_or(0)
    }

    pub fn add_depth(&mut self, mesh: &str, member: &str, delta: i64) {
        let per = match self.queue_depth.get_mut(mesh) {
            Some(per) => per,
            None => self.queue_depth.entry(mesh.to_string()).or_default(),
        };
        let e = match per.get_mut(member) {
            Some(e) => e,
            None => per.entry(member.to_string()).or_default(),
        };
        *e = (i64::from(*e) + delta).max(0) as u32;
    }
}

/// One unit of work for the writer.
pub trait Job: Send {
    /// Runs inside the batch's write transaction. Domain refusals are part of the job's own
    /// outcome and must write nothing; an `Err` is a storage failure that aborts the batch.
    fn apply(&mut self, tx: &Tx<'_>, state: &mut WriterState) -> Result<(), StoreError>;
    /// Runs once every job of the batch applied without error, just before the commit (and its
    /// fsync): only for effects that are safe if the commit then fails, because nothing
    /// acknowledged depends on them. Default: nothing.
    fn before_commit(&mut self) {}
    /// Runs after the commit (or with what failed the batch).
    fn finish(self: Box<Self>, committed: Result<(), &WriteFailure>);
}

struct FnJob<T, A, F> {
    apply: Option<A>,
    out: Option<T>,
    finish: F,
}

impl<T, A, F> Job for FnJob<T, A, F>
where
    T: Send,
    A: FnOnce(&Tx<'_>, &mut WriterState) -> Result<T, StoreError> + Send,
    F: FnOnce(Result<T, WriteFailure>) + Send,
{
    fn apply(&mut self, tx: &Tx<'_>, state: &mut WriterState) -> Result<(), StoreError> {
        if let Some(f) = self.apply.take() {
            self.out = Some(f(tx, state)?);
        }
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), &WriteFailure>) {
        let r = match (committed, self.out) {
            (Ok(()), Some(v)) => Ok(v),
            (Err(e), _) => Err(e.clone()),
            (Ok(()), None) => Err(WriteFailure {
                kind: super::FailureKind::Other,
                message: "job was not applied".to_string(),
            }),
        };
        (self.finish)(r)
    }
}

/// A job from two closures: `apply` in the transaction, `finish` after the commit with its
/// output (or what failed the batch).
pub fn job<T, A, F>(apply: A, finish: F) -> Box<dyn Job>
where
    T: Send + 'static,
    A: FnOnce(&Tx<'_>, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
    F: FnOnce(Result<T, WriteFailure>) + Send + 'static,
{
    Box::new(FnJob { apply: Some(apply), out: None, finish })
}

/// Cheap handle to the store: submit jobs, or read directly.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Box<dyn Job>>,
    /// For reads; the writer may replace the handle inside after an I/O failure.
    pub db: Arc<Db>,
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl StoreHandle {
    /// [`super::read_get`] on the blocking pool (a redb read blocks): for connection tasks.
    pub async fn get_blocking<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: super::Table,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.read_get::<T>(table, &key))
            .await
            .unwrap_or_else(|e| Err(StoreError::Failed(format!("the store read stopped: {e}"))))
    }

    /// [`super::read_scan`] (every row under `prefix`) on the blocking pool.
    pub async fn scan_blocking(
        &self,
        table: super::Table,
        prefix: String,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.read_scan(table, &prefix))
            .await
            .unwrap_or_else(|e| Err(StoreError::Failed(format!("the store read stopped: {e}"))))
    }

    /// Queues a job; waits only when the queue is full (backpressure).
    pub async fn submit(&self, job: Box<dyn Job>) -> Result<(), StoreError> {
        self.tx.send(job).await.map_err(|_| StoreError::Closed)
    }

    /// Runs `apply` in the next batch and waits for its commit.
    pub async fn write<T, A>(&self, apply: A) -> Result<T, StoreError>
    where
        T: Send + 'static,
        A: FnOnce(&Tx<'_>, &mut WriterState) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        self.submit(job(apply, move |r| {
            let _ = done.send(r);
        }))
        .await?;
        match wait.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(f)) => Err(StoreError::Batch(f)),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

/// Starts the writer thread. It stops, after committing what it already took, once every
/// [`StoreHandle`] is dropped.
pub fn start(
    db: Arc<Db>,
    state: WriterState,
    metrics: Arc<Metrics>,
    max_batch: usize,
) -> std::io::Result<(StoreHandle, JoinHandle<()>)> {
    // Room for the batch being committed and the next one: senders wait beyond that.
    let (tx, rx) = mpsc::channel::<Box<dyn Job>>(max_batch * 2);
    let db2 = db.clone();
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(&db2, state, rx, &metrics, max_batch))?;
    Ok((StoreHandle { tx, db }, handle))
}

fn run(
    db: &Db,
    mut state: WriterState,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    metrics: &Metrics,
    max_batch: usize,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    // The last failure was a full disk: until a batch commits, a failed reopen counts as full too.
    let mut full = false;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let t0 = Instant::now();
        let result = match db.get() {
            Ok(handle) => commit_batch(&handle, &mut state, &mut batch),
            // A reopen failed earlier (the disk was still full): try again now.
            Err(_) => db.reopen().and_then(|()| commit_batch(&*db.get()?, &mut state, &mut batch)),
        };
        metrics.commit_latency.observe(t0.elapsed());
        metrics.commit_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = result.map_err(|e| {
            let failure = WriteFailure::from_error(&e, full && !db.is_open());
            full = failure.kind == super::FailureKind::Full;
            tracing::error!(error = %e, jobs = batch.len(), "store batch failed; nothing in it was acknowledged");
            if e.needs_reopen() || !db.is_open() {
                // redb refuses every later write on a handle that saw an I/O error.
                match db.reopen() {
                    Ok(()) => tracing::warn!("store reopened after an I/O failure"),
                    Err(e) => tracing::error!(error = %e, "cannot reopen the store yet; retrying at the next write"),
                }
            }
            // Depth counters may include the aborted batch: recount from what is committed.
            if let Ok(snap) = db.get().and_then(|h| super::load(&h)) {
                state = WriterState::new(snap.queue_depth);
            }
            failure
        });
        if result.is_ok() {
            full = false;
        }
        for j in batch.drain(..) {
            j.finish(result.as_ref().map(|_| ()));
        }
    }
}

fn commit_batch(
    db: &Database,
    state: &mut WriterState,
    batch: &mut [Box<dyn Job>],
) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Failed(e.to_string()))?;
    {
        let tx = Tx::new(&txn);
        for j in batch.iter_mut() {
            j.apply(&tx, state)?;
        }
    }
    for j in batch.iter_mut() {
        j.before_commit();
    }
    txn.commit()?;
    Ok(())
}
