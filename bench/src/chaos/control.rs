//! A tenant working through Orion while faults happen: clusters created, resized and deleted
//! one after another. Every request is sent again with the same `Idempotency-Key` until Orion
//! answers it (a 503 or a lost connection while Redis is away is not an answer), as a careful
//! client does. Every accepted command (202) is logged with the phase it must end in, when it
//! got there, and how many nodes the cluster had then.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::platform::cluster_spec;

/// How long an accepted command may take to end, faults included, before it counts as lost.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct Accepted {
    pub op: &'static str,
    pub cluster: String,
    pub accepted: Instant,
    /// The phase the command ends in.
    pub ends_in: &'static str,
    /// The nodes the cluster must have then.
    pub nodes: usize,
    /// When the phase was reached, and the node processes counted then.
    pub ended: Option<(Instant, usize)>,
    /// Answers that were not answers (503, connection lost) before the 202.
    pub unanswered: u32,
}

#[derive(Clone)]
pub struct Tenant {
    pub http: reqwest::Client,
    pub api: String,
    pub token: String,
    pub account: String,
    /// Where the local driver keeps the nodes, to count a cluster's processes.
    pub nodes_dir: PathBuf,
}

impl Tenant {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value, Option<u64>), String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(10));
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let text = r.text().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            retry_after,
        ))
    }

    /// Sends a command until Orion answers it; `(status, body, unanswered tries)`. An answer
    /// with `Retry-After` (503 while Redis is away, 409 while the first try with this key is
    /// still held) is no answer yet: sent again, with the same key, after that long.
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value, u32), String> {
        let key = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let mut unanswered = 0;
        loop {
            match self
                .send(method.clone(), path, body.as_ref(), Some(&key))
                .await
            {
                Ok((_, _, Some(secs))) if started.elapsed() < COMMAND_DEADLINE => {
                    unanswered += 1;
                    tokio::time::sleep(Duration::from_secs(secs.min(5))).await;
                }
                Err(_) if started.elapsed() < COMMAND_DEADLINE => {
                    unanswered += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok((status, v, _)) => return Ok((status, v, unanswered)),
                Err(e) => return Err(e),
            }
        }
    }

    fn count_nodes(&self, cluster: &str) -> usize {
        testkit::procs::qdrant_nodes_under(&self.nodes_dir.join(cluster)).len()
    }

    /// Polls until the cluster is in `phase`; when, and its node processes then.
    async fn wait(&self, cluster: &str, phase: &str) -> Option<(Instant, usize)> {
        let path = format!("/api/v1/accounts/{}/clusters/{cluster}", self.account);
        let started = Instant::now();
        while started.elapsed() < COMMAND_DEADLINE {
            if let Ok((200, c, _)) = self.send(reqwest::Method::GET, &path, None, None).await
                && c["phase"] == phase
            {
                return Some((Instant::now(), self.count_nodes(cluster)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// One cluster's life: create (1 node), resize to 2, delete; each waited for.
    async fn cycle(&self, name: &str, log: &mut Vec<Accepted>) -> Result<(), String> {
        let clusters = format!("/api/v1/accounts/{}/clusters", self.account);
        let (status, created, unanswered) = self
            .command(
                reqwest::Method::POST,
                &clusters,
                Some(cluster_spec(name, 1)),
            )
            .await?;
        // 202, or 200 when a retry was sent (303) to the cluster the first try made.
        let Some(id) = created["id"]
            .as_str()
            .filter(|_| status == 202 || status == 200)
        else {
            return Err(format!("create answered {status}: {created}"));
        };
        let id = id.to_owned();
        let path = format!("{clusters}/{id}");
        let steps: [(
            &'static str,
            reqwest::Method,
            Option<Value>,
            &'static str,
            usize,
        ); 3] = [
            ("create", reqwest::Method::POST, None, "HEALTHY", 1),
            (
                "resize",
                reqwest::Method::PATCH,
                Some(json!({"configuration": cluster_spec(name, 2)["configuration"]})),
                "HEALTHY",
                2,
            ),
            ("delete", reqwest::Method::DELETE, None, "DELETED", 0),
        ];
        for (op, method, body, ends_in, nodes) in steps {
            let (accepted, unanswered) = if op == "create" {
                (Instant::now(), unanswered)
            } else {
                let (status, answer, unanswered) = self.command(method, &path, body).await?;
                if status != 202 && status != 200 {
                    return Err(format!("{op} answered {status}: {answer}"));
                }
                (Instant::now(), unanswered)
            };
            let ended = self.wait(&id, ends_in).await;
            log.push(Accepted {
                op,
                cluster: id.clone(),
                accepted,
                ends_in,
                nodes,
                ended,
                unanswered,
            });
            if ended.is_none() {
                return Err(format!("{op} of {id} never reached {ends_in}"));
            }
        }
        Ok(())
    }

    /// Cycles clusters until `stop`; every accepted command, and the errors met.
    pub async fn churn(
        self,
        prefix: String,
        stop: Arc<AtomicBool>,
    ) -> (Vec<Accepted>, Vec<String>) {
        let mut log = Vec::new();
        let mut errors = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.cycle(&format!("{prefix}-{i}"), &mut log).await {
                errors.push(e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            i += 1;
        }
        (log, errors)
    }
}
