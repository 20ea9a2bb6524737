//! The queue discipline shared by the server's batch writers: a writer waits for the first job
//! only, then takes whatever else is queued, up to a limit. Nobody waits for a batch to fill,
//! so under light load a batch is one job, and under heavy load batches grow by themselves.

use tokio::sync::{Mutex, mpsc};

/// The next batch: the first job (waited for), then at most `max - 1` more that are already
/// queued. `None` once every sender is gone.
pub async fn next_batch<T>(jobs: &Mutex<mpsc::Receiver<T>>, max: usize) -> Option<Vec<T>> {
    let mut jobs = jobs.lock().await;
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
