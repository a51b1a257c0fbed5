//! A route's nodes as ready upstream peers, with their addresses resolved off the request
//! path.
//!
//! Drivers publish node addresses as `ip:port` (local) or as host names (`*.svc` of the
//! kubernetes and helm drivers). Building a peer from a name resolves it with a blocking
//! `getaddrinfo` on the worker thread, on every request, and pingora panics when that fails.
//! So names are resolved here, asynchronously and under a deadline, whenever routes are made
//! (at every resync, on every route event and lookup): a name that does not resolve is logged
//! and its node skipped, never a panic; the request path only clones a ready peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use contract::route::{NodeEndpoint, RouteRecord};
use pingora::upstreams::peer::HttpPeer;

use crate::config::UpstreamTimeouts;

/// How long resolving one name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Node host names resolved to socket addresses; literal `ip:port` addresses need no entry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolved(HashMap<String, SocketAddr>);

impl Resolved {
    /// Resolves every node address of `records` that is not a literal socket address, all at
    /// once. A name that does not resolve in time is logged and left out: its node is skipped
    /// until a later resolution finds it.
    pub async fn of<'a>(records: impl IntoIterator<Item = &'a RouteRecord>) -> Self {
        let mut names: Vec<&str> = records
            .into_iter()
            .flat_map(|r| r.nodes.iter())
            .flat_map(|n| [n.rest.as_str(), n.grpc.as_str()])
            .filter(|a| a.parse::<SocketAddr>().is_err())
            .collect();
        names.sort_unstable();
        names.dedup();
        let lookups = names.into_iter().map(|name| async move {
            let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(name)).await;
            match found {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(addr) => Some((name.to_owned(), addr)),
                    None => {
                        tracing::warn!(node = name, "a node's name resolves to no address; skipped");
                        None
                    }
                },
                Ok(Err(e)) => {
                    tracing::warn!(node = name, error = %e, "cannot resolve a node's name; skipped");
                    None
                }
                Err(_) => {
                    tracing::warn!(node = name, "resolving a node's name timed out; skipped");
                    None
                }
            }
        });
        Self(
            futures_util::future::join_all(lookups)
                .await
                .into_iter()
                .flatten()
                .collect(),
        )
    }

    /// A resolution made by hand (tests).
    #[cfg(test)]
    pub(crate) fn with(mut self, name: &str, addr: SocketAddr) -> Self {
        self.0.insert(name.to_owned(), addr);
        self
    }

    /// The socket address of `addr`: itself when literal, else what it resolved to.
    pub fn get(&self, addr: &str) -> Option<SocketAddr> {
        addr.parse().ok().or_else(|| self.0.get(addr).copied())
    }
}

/// One node's peers, one per listener; `None` where its address did not resolve.
#[derive(Clone)]
pub struct NodePeers {
    pub rest: Option<HttpPeer>,
    pub grpc: Option<HttpPeer>,
    /// What the addresses resolved to, to notice when a name now resolves elsewhere.
    pub addrs: (Option<SocketAddr>, Option<SocketAddr>),
}

impl NodePeers {
    pub fn new(node: &NodeEndpoint, resolved: &Resolved, t: UpstreamTimeouts) -> Self {
        let addrs = (resolved.get(&node.rest), resolved.get(&node.grpc));
        Self {
            rest: addrs.0.map(|a| peer(a, false, t)),
            grpc: addrs.1.map(|a| peer(a, true, t)),
            addrs,
        }
    }

    pub fn for_listener(&self, grpc: bool) -> Option<&HttpPeer> {
        if grpc {
            self.grpc.as_ref()
        } else {
            self.rest.as_ref()
        }
    }
}

/// A plain-HTTP peer with the gateway's timeouts; h2c with many streams for gRPC.
fn peer(addr: SocketAddr, grpc: bool, t: UpstreamTimeouts) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(t.idle);
    if grpc {
        peer.options.set_http_version(2, 2);
        peer.options.max_h2_streams = 256;
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(nodes: &[(&str, &str)]) -> RouteRecord {
        let sealed = contract::seal::Sealed {
            kid: String::new(),
            alg: String::new(),
            nonce: String::new(),
            ciphertext: String::new(),
        };
        RouteRecord {
            cluster_id: contract::ids::ClusterId::new(),
            account_id: contract::ids::AccountId::new(),
            host: String::new(),
            phase: contract::cluster::Phase::Healthy,
            nodes: nodes
                .iter()
                .map(|(rest, grpc)| NodeEndpoint {
                    rest: (*rest).into(),
                    grpc: (*grpc).into(),
                })
                .collect(),
            credentials: contract::route::UpstreamCredentials {
                read_write: sealed.clone(),
                read_only: sealed,
            },
            limits: Default::default(),
            version: 1,
        }
    }

    #[tokio::test]
    async fn literal_addresses_need_no_lookup_and_names_resolve_or_are_skipped() {
        let r = record(&[
            ("127.0.0.1:6333", "[::1]:6334"),
            ("localhost:7333", "qdrant-0.no-such-name.invalid:6334"),
        ]);
        let resolved = Resolved::of([&r]).await;
        assert_eq!(
            resolved.get("127.0.0.1:6333"),
            Some("127.0.0.1:6333".parse().unwrap_or_else(|_| unreachable!()))
        );
        assert!(resolved.get("[::1]:6334").is_some());
        let local = resolved.get("localhost:7333");
        assert!(
            local.is_some_and(|a| a.ip().is_loopback() && a.port() == 7333),
            "{local:?}"
        );
        assert_eq!(resolved.get("qdrant-0.no-such-name.invalid:6334"), None);
        assert_eq!(resolved.get("not an address"), None);

        let t = UpstreamTimeouts {
            connect: Duration::from_secs(1),
            read: Duration::from_secs(1),
            write: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        };
        let second = NodePeers::new(&r.nodes[1], &resolved, t);
        assert!(second.for_listener(false).is_some());
        assert!(second.for_listener(true).is_none(), "unresolved: skipped");
    }
}
