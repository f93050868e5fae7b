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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::{Db, StoreError, Tx, WriteFailure};
use crate::metrics::Metrics;

/// How many recent messages' senders [`WriterState`] remembers (for every mesh together): acks
/// come within milliseconds of a push, so this covers the acks of online recipients at half a
/// second of sends at the broker's top rate; a miss reads the message record.
const RECENT_SENDERS: usize = 16_384;

/// State only the writer thread touches, kept consistent with committed data.
#[derive(Debug, Default)]
pub struct WriterState {
    /// Undelivered messages per mesh, then per member (looked up without allocating).
    queue_depth: HashMap<String, HashMap<String, u32>>,
    /// Sender member of the latest messages, by `mesh␟msg_id` (their record's key): a
    /// `client_ack` learns whom to send a receipt without reading the message record.
    senders: HashMap<Arc<str>, String>,
    /// Keys of `senders`, oldest first (evicted past [`RECENT_SENDERS`]).
    sender_order: VecDeque<Arc<str>>,
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
    /// For a message written in this batch. If the batch then fails, the entry may stay (a
    /// failed batch rebuilds the state only when it can read the store): harmless, because
    /// message ids are never reused and a receipt is sent only for a message whose state row
    /// or queued copy proves it was committed.
    pub fn remember_sender(&mut self, record_key: &str, sender: &str) {
        if self.sender_order.len() >= RECENT_SENDERS
            && let Some(old) = self.sender_order.pop_front()
        {
            self.senders.remove(&old);
        }
        let k: Arc<str> = Arc::from(record_key);
        self.senders.insert(k.clone(), sender.to_string());
        self.sender_order.push_back(k);
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

/// Bytes of sends that may wait for the writer at once (queued, or in the batch it is
/// committing) before further senders wait: a job count alone bounds nothing when one send
/// may carry 4 MiB of envelopes. Held from [`StoreHandle::submit_sized`] until the job's
/// `finish`.
pub const MAX_PENDING_BYTES: usize = 256 << 20;

/// Budget granularity: permits are KiB.
const PERMIT_BYTES: usize = 1024;

/// Cheap handle to the store: submit jobs, or read directly.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Box<dyn Job>>,
    /// [`MAX_PENDING_BYTES`] in KiB permits.
    pending: Arc<Semaphore>,
    /// Permits in all of `pending` (a larger job takes them all).
    pending_kib: u32,
    /// For reads; the writer may replace the handle inside after an I/O failure.
    pub db: Arc<Db>,
}

/// A job holding its share of the pending-bytes budget until it has finished.
struct Held {
    job: Box<dyn Job>,
    _permit: OwnedSemaphorePermit,
}

impl Job for Held {
    fn apply(&mut self, tx: &Tx<'_>, state: &mut WriterState) -> Result<(), StoreError> {
        self.job.apply(tx, state)
    }

    fn before_commit(&mut self) {
        self.job.before_commit();
    }

    fn finish(self: Box<Self>, committed: Result<(), &WriteFailure>) {
        let Held { job, _permit } = *self;
        job.finish(committed);
    }
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

    /// Queues a job that holds `bytes` in memory until it finishes (a send's rows and push
    /// frames): waits first while sends holding [`MAX_PENDING_BYTES`] are pending.
    pub async fn submit_sized(&self, job: Box<dyn Job>, bytes: usize) -> Result<(), StoreError> {
        let kib = u32::try_from(bytes.div_ceil(PERMIT_BYTES)).unwrap_or(u32::MAX).clamp(1, self.pending_kib);
        let permit = self.pending.clone().acquire_many_owned(kib).await.map_err(|_| StoreError::Closed)?;
        self.submit(Box::new(Held { job, _permit: permit })).await
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

/// Starts the writer thread, committing batches of at most `max_batch` jobs, with
/// [`MAX_PENDING_BYTES`] for sends waiting. It stops, after committing what it already took,
/// once every [`StoreHandle`] is dropped.
pub fn start(
    db: Arc<Db>,
    state: WriterState,
    metrics: Arc<Metrics>,
    max_batch: usize,
) -> std::io::Result<(StoreHandle, JoinHandle<()>)> {
    start_with_budget(db, state, metrics, max_batch, MAX_PENDING_BYTES)
}

/// [`start`] with `pending_bytes` for sends waiting (at least 1 KiB).
pub fn start_with_budget(
    db: Arc<Db>,
    state: WriterState,
    metrics: Arc<Metrics>,
    max_batch: usize,
    pending_bytes: usize,
) -> std::io::Result<(StoreHandle, JoinHandle<()>)> {
    // Room for the next batch while one commits (which has left the queue): senders wait
    // beyond that, and beyond the bytes budget.
    let (tx, rx) = mpsc::channel::<Box<dyn Job>>(max_batch);
    let pending_kib = u32::try_from(pending_bytes / PERMIT_BYTES).unwrap_or(u32::MAX).max(1);
    let pending = Arc::new(Semaphore::new(pending_kib as usize));
    let db2 = db.clone();
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(&db2, state, rx, &metrics, max_batch))?;
    Ok((StoreHandle { tx, pending, pending_kib, db }, handle))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sends_past_the_pending_bytes_wait_until_earlier_ones_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let db = Arc::new(Db::new(&path, super::super::open(&path, 1 << 20).unwrap(), 1 << 20));
        let metrics = Arc::new(Metrics::default());
        let (store, _writer) = start_with_budget(db, WriterState::default(), metrics, 16, 64 * 1024).unwrap();
        // A first send of 48 KiB, held inside the writer until released.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (done, first_done) = oneshot::channel();
        let first = job(
            move |_, _| {
                let _ = hold.recv();
                Ok(())
            },
            move |r| {
                let _ = done.send(r.is_ok());
            },
        );
        store.submit_sized(first, 48 * 1024).await.unwrap();
        // A second of 32 KiB does not fit in the 16 KiB left: it waits for the first.
        let s2 = store.clone();
        let second =
            tokio::spawn(async move { s2.submit_sized(job(|_, _| Ok(()), |_| {}), 32 * 1024).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!second.is_finished(), "a send was queued past the pending-bytes budget");
        release.send(()).unwrap();
        assert!(first_done.await.unwrap());
        tokio::time::timeout(Duration::from_secs(5), second).await.unwrap().unwrap().unwrap();
        // One send larger than the whole budget takes all of it rather than waiting forever.
        store.write(|_, _| Ok(())).await.unwrap();
        let big = tokio::time::timeout(
            Duration::from_secs(5),
            store.submit_sized(job(|_, _| Ok(()), |_| {}), 1 << 20),
        );
        big.await.unwrap().unwrap();
    }
}
