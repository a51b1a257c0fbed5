//! The p2p port: how stand-in nodes form one cluster. Real Qdrant speaks Raft over gRPC
//! here; the double keeps only what Lyra observes: a node started with `--bootstrap` joins
//! the bootstrap peer, and becomes ready once it has; and every node holds every collection
//! (a change is copied to all peers before it is acknowledged). The copy is the whole
//! collection map, last writer wins: enough for a double that serves one client at a time,
//! not a consensus protocol.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use super::state::{Collection, Node};

#[derive(Debug, Serialize, Deserialize)]
pub struct Join {
    pub peer_id: u64,
    pub uri: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Joined {
    pub leader: u64,
    pub peers: BTreeMap<u64, String>,
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// A peer removed from the cluster (Qdrant: `DELETE /cluster/peer/{id}`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Forget {
    pub peer_id: u64,
}

/// Every collection a node holds, sent to its peers after a change.
#[derive(Debug, Serialize, Deserialize)]
pub struct Replica {
    pub from: u64,
    pub collections: BTreeMap<String, Collection>,
}

/// `POST /join` adds a peer and answers with the whole table; `GET /peers` shows it;
/// `POST /replicate` replaces this node's collections with a peer's.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST, Vec::new()),
    };
    if method == Method::POST && path == "/replicate" {
        let Ok(replica) = serde_json::from_slice::<Replica>(&body) else {
            return reply(StatusCode::BAD_REQUEST, Vec::new());
        };
        if let Ok(mut collections) = node.collections.lock() {
            *collections = replica.collections;
        }
        node.persist();
        return reply(StatusCode::OK, Vec::new());
    }
    if method == Method::POST && path == "/forget" {
        let Ok(gone) = serde_json::from_slice::<Forget>(&body) else {
            return reply(StatusCode::BAD_REQUEST, Vec::new());
        };
        if let Ok(mut peers) = node.peers.lock() {
            peers.remove(&gone.peer_id);
        }
        return reply(StatusCode::OK, Vec::new());
    }
    if method == Method::POST && path == "/join" {
        let Ok(join) = serde_json::from_slice::<Join>(&body) else {
            return reply(StatusCode::BAD_REQUEST, Vec::new());
        };
        if let Ok(mut peers) = node.peers.lock() {
            peers.insert(join.peer_id, join.uri);
        }
    }
    let answer = Joined {
        leader: node.leader.load(Ordering::Relaxed),
        peers: node.peers.lock().map(|p| p.clone()).unwrap_or_default(),
    };
    reply(
        StatusCode::OK,
        serde_json::to_vec(&answer).unwrap_or_default(),
    )
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// How long a change waits for one peer before going on without it (a stopped peer must not
/// stall the cluster).
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

async fn exchange(client: &HttpClient, request: Request<Full<Bytes>>) -> Option<Bytes> {
    let call = async {
        let response = client.request(request).await.ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        Some(response.into_body().collect().await.ok()?.to_bytes())
    };
    tokio::time::timeout(PEER_TIMEOUT, call)
        .await
        .ok()
        .flatten()
}

/// The p2p URIs of every peer but this node.
fn other_peers(node: &Node) -> Vec<String> {
    node.peers
        .lock()
        .map(|p| {
            p.iter()
                .filter(|(id, _)| **id != node.peer_id)
                .map(|(_, uri)| uri.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Tells every other peer that `gone` left the cluster.
pub async fn forget(node: &Node, gone: u64) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let Ok(body) = serde_json::to_vec(&Forget { peer_id: gone }) else {
        return;
    };
    let others = other_peers(node);
    for uri in others {
        if let Ok(request) = Request::post(format!("{}/forget", uri.trim_end_matches('/')))
            .body(Full::new(Bytes::from(body.clone())))
        {
            let _ = exchange(&client, request).await;
        }
    }
}

/// Copies this node's collections to every peer. The peer table is refreshed first from the
/// known peers: a node that joined early learns of the nodes that joined after it from the
/// bootstrap peer, which sees every join.
pub async fn replicate(node: &Node) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let known: Vec<String> = node
        .peers
        .lock()
        .map(|p| p.values().cloned().collect())
        .unwrap_or_default();
    for uri in known {
        let Ok(request) = Request::get(format!("{}/peers", uri.trim_end_matches('/')))
            .body(Full::new(Bytes::new()))
        else {
            continue;
        };
        if let Some(table) = exchange(&client, request)
            .await
            .and_then(|b| serde_json::from_slice::<Joined>(&b).ok())
            && let Ok(mut peers) = node.peers.lock()
        {
            peers.extend(table.peers);
        }
    }
    let replica = Replica {
        from: node.peer_id,
        collections: node
            .collections
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default(),
    };
    let Ok(body) = serde_json::to_vec(&replica) else {
        return;
    };
    let others = other_peers(node);
    for uri in others {
        if let Ok(request) = Request::post(format!("{}/replicate", uri.trim_end_matches('/')))
            .body(Full::new(Bytes::from(body.clone())))
        {
            let _ = exchange(&client, request).await;
        }
    }
}

/// One attempt to join: `None` if the bootstrap peer is not there yet or answered oddly.
async fn try_join(client: &HttpClient, uri: &str, body: &[u8]) -> Option<Joined> {
    let request = Request::post(uri)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .ok()?;
    let response = client.request(request).await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let collected = response.into_body().collect().await.ok()?;
    serde_json::from_slice(&collected.to_bytes()).ok()
}

/// Joins `bootstrap`, retrying until it answers (Qdrant waits for its bootstrap peer too).
pub async fn join(node: Arc<Node>, bootstrap: String) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let uri = format!("{}/join", bootstrap.trim_end_matches('/'));
    let me = Join {
        peer_id: node.peer_id,
        uri: node.uri.clone().unwrap_or_default(),
    };
    let Ok(body) = serde_json::to_vec(&me) else {
        return;
    };
    loop {
        if let Some(joined) = try_join(&client, &uri, &body).await {
            node.leader.store(joined.leader, Ordering::Relaxed);
            if let Ok(mut peers) = node.peers.lock() {
                peers.extend(joined.peers);
            }
            node.ready.store(true, Ordering::Relaxed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
