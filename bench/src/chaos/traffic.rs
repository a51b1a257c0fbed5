//! Clients that keep requests flowing through GateKeeper and log every request with its time,
//! so a run can say what each fault cost. A connection that fails is opened again; a request
//! that takes longer than [`REQUEST_TIMEOUT`] counts as failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::load::{self, Target};

/// Longer than any answer GateKeeper should take on loopback, even while Redis is away.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A correct answer (2xx).
    Ok,
    /// An answer with another status.
    Refused,
    /// No answer: the connection failed or the request timed out.
    Failed,
}

/// One request: when it was sent, when it ended, what it came to.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub sent: Instant,
    pub done: Instant,
    pub outcome: Outcome,
}

/// `connections` clients sending `target` one request after another, each waiting `pause`
/// between requests (so the load leaves the rest of the platform room on a small machine).
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Request>>>,
}

impl Traffic {
    pub fn start(target: Target, connections: usize, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..connections.max(1))
            .map(|_| tokio::spawn(client(target.clone(), stop.clone(), pause)))
            .collect();
        Self { stop, tasks }
    }

    /// Stops the clients and returns every request, in the order they were sent, and how many
    /// clients died (a client that panicked lost its log: the run cannot be judged).
    pub async fn stop(self) -> (Vec<Request>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut died = 0;
        for t in self.tasks {
            match t.await {
                Ok(log) => all.extend(log),
                Err(_) => died += 1,
            }
        }
        all.sort_by_key(|r| r.sent);
        (all, died)
    }
}

async fn client(target: Target, stop: Arc<AtomicBool>, pause: Duration) -> Vec<Request> {
    let mut log = Vec::new();
    let mut conn: Option<load::Connection> = None;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                match tokio::time::timeout(REQUEST_TIMEOUT, load::Connection::open(&target)).await {
                    Ok(Ok(c)) => conn.insert(c),
                    _ => {
                        log.push(Request {
                            sent,
                            done: Instant::now(),
                            outcome: Outcome::Failed,
                        });
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        };
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, c.send(&target)).await {
            Ok(Ok(true)) => Outcome::Ok,
            Ok(Ok(false)) => Outcome::Refused,
            Ok(Err(_)) | Err(_) => {
                conn = None;
                Outcome::Failed
            }
        };
        log.push(Request {
            sent,
            done: Instant::now(),
            outcome,
        });
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    log
}

/// Requests that overlapped `[from, to)` (sent before it ended, ended after it began): how
/// many did not get a correct answer, and how many there were.
pub fn failures_during(log: &[Request], from: Instant, to: Instant) -> (usize, usize) {
    count(log.iter().filter(|r| r.sent < to && r.done > from))
}

/// Requests in flight at `at` (sent before, ended after).
pub fn in_flight_at(log: &[Request], at: Instant) -> usize {
    log.iter().filter(|r| r.sent <= at && r.done > at).count()
}

/// Requests sent in `(from, to)` that did not get a correct answer.
pub fn failed_sent_between(log: &[Request], from: Instant, to: Instant) -> usize {
    count(log.iter().filter(|r| r.sent > from && r.sent < to)).0
}

fn count<'a>(requests: impl Iterator<Item = &'a Request>) -> (usize, usize) {
    requests.fold((0, 0), |(bad, all), r| {
        (bad + usize::from(r.outcome != Outcome::Ok), all + 1)
    })
}
