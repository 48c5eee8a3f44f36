//! Group commit: the writes that are ready at the same moment share one statement and one
//! commit (issue 19 §3), so PostgreSQL flushes its WAL and plans once for all of them.
//!
//! There is no waiting window: a job goes out as soon as a batch may start, alone when nothing
//! else is waiting, so at low load nothing is added to its latency. Only while `in_flight`
//! batches are already running do new jobs queue up, and then the next batch takes all of them
//! (up to `max_batch`). Each job's caller is answered when its batch has run, so an answer
//! never precedes its commit.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Jobs waiting for a batch beyond this make their callers wait to hand them over.
const QUEUE: usize = 4096;

/// Hands jobs to the batching task; cheap to clone.
pub struct GroupCommit<J, R> {
    jobs: mpsc::Sender<(J, oneshot::Sender<R>)>,
}

impl<J, R> Clone for GroupCommit<J, R> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<J: Send + 'static, R: Send + 'static> GroupCommit<J, R> {
    /// Starts the batching task on the current tokio runtime. `run` gets each batch and must
    /// answer one result per job, in the batch's order; up to `in_flight` of its calls run at
    /// once. The task ends when every handle is dropped, after the batches under way.
    pub fn spawn<F, Fut>(in_flight: usize, max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (jobs, mut queue) = mpsc::channel::<(J, oneshot::Sender<R>)>(QUEUE);
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = queue.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match queue.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let (jobs, replies): (Vec<J>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                let results = run(jobs);
                tokio::spawn(async move {
                    let results = results.await;
                    debug_assert_eq!(results.len(), replies.len());
                    for (reply, result) in replies.into_iter().zip(results) {
                        // The caller may have gone (its client hung up): the write stands.
                        let _ = reply.send(result);
                    }
                    drop(slot);
                });
            }
        });
        Self { jobs }
    }

    /// Runs `job` in the next batch and answers its result; `None` if the batching task has
    /// stopped, or a batch's `run` dropped the job without a result.
    pub async fn submit(&self, job: J) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((job, reply)).await.ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn a_lone_job_goes_alone_and_waiting_ones_share_the_next_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let seen = sizes.clone();
        let group = GroupCommit::spawn(1, 8, move |jobs: Vec<u32>| {
            seen.lock().unwrap().push(jobs.len());
            let mut gate = gate_rx.clone();
            async move {
                // The first batch waits for the gate, so the next jobs queue up behind it.
                let _ = gate.wait_for(|open| *open).await;
                jobs.into_iter().map(|j| j * 10).collect()
            }
        });
        let first = tokio::spawn({
            let g = group.clone();
            async move { g.submit(1).await }
        });
        // Wait until the first batch has started (one job, nothing else was waiting).
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=5)
            .map(|j| {
                let g = group.clone();
                tokio::spawn(async move { g.submit(j).await })
            })
            .collect();
        // Let the four be queued before the gate opens.
        while group.jobs.capacity() > QUEUE - 4 {
            tokio::task::yield_now().await;
        }
        gate_tx.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Some(10));
        let mut answers = Vec::new();
        for r in rest {
            answers.push(r.await.unwrap());
        }
        assert_eq!(answers, vec![Some(20), Some(30), Some(40), Some(50)]);
        assert_eq!(*sizes.lock().unwrap(), vec![1, 4]);
    }

    #[tokio::test]
    async fn a_batch_takes_at_most_max_batch_jobs() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let group = GroupCommit::spawn(1, 3, move |jobs: Vec<u32>| {
            seen.lock().unwrap().push(jobs.len());
            let mut gate = gate_rx.clone();
            async move {
                let _ = gate.wait_for(|open| *open).await;
                jobs
            }
        });
        let handles: Vec<_> = (0..7)
            .map(|j| {
                let g = group.clone();
                tokio::spawn(async move { g.submit(j).await })
            })
            .collect();
        // Until the first batch has started and every other job is queued behind it.
        loop {
            let first = sizes.lock().unwrap().first().copied();
            if first.is_some_and(|f| QUEUE - group.jobs.capacity() == 7 - f) {
                break;
            }
            tokio::task::yield_now().await;
        }
        gate_tx.send(true).unwrap();
        for (j, h) in handles.into_iter().enumerate() {
            assert_eq!(h.await.unwrap(), Some(j as u32));
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().all(|&s| s <= 3), "{sizes:?}");
    }
}
