//! The stand-in Qdrant: a **test double** of the Qdrant server.
//!
//! It listens where Qdrant would (`QDRANT__SERVICE__HTTP_PORT`, `..._GRPC_PORT`,
//! `QDRANT__CLUSTER__P2P__PORT`), enforces Qdrant's key rules ([`auth`]), answers a few REST
//! routes with Qdrant-shaped JSON ([`rest`]), echoes gRPC unary calls with trailers
//! ([`grpc`]), and forms a cluster through `--uri` / `--bootstrap` ([`peers`]).
//! `GET /__standin/stats` (not a Qdrant route) tells a test how many requests reached it.

pub mod auth;
mod config;
pub mod grpc;
pub mod peers;
pub mod rest;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub use config::{Args, Config};
use state::Node;

async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Accepts connections forever, serving each with `serve`.
async fn accept_loop<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TokioIo<tokio::net::TcpStream>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(TokioIo::new(stream)));
    }
}

pub async fn run(config: Config) -> Result<(), String> {
    let keys = auth::Keys::new(
        config.api_key.clone(),
        config.read_only_api_key.clone(),
        config.jwt_rbac,
    );
    let node = Arc::new(
        Node::open(keys, config.storage_path.clone(), config.uri.clone())
            .map_err(|e| format!("storage {:?}: {e}", config.storage_path))?,
    );
    let rest_listener = bind(config.http_addr()).await?;
    let grpc_listener = bind(config.grpc_addr()).await?;
    let p2p_listener = if config.cluster_enabled {
        Some(bind(config.p2p_addr()).await?)
    } else {
        None
    };

    let rest = {
        let node = node.clone();
        accept_loop(rest_listener, move |io| {
            let node = node.clone();
            async move {
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let node = node.clone();
                    async move { Ok::<_, std::convert::Infallible>(rest::handle(node, req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
            }
        })
    };
    let grpc = {
        let node = node.clone();
        accept_loop(grpc_listener, move |io| {
            let node = node.clone();
            async move {
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let node = node.clone();
                    async move { Ok::<_, std::convert::Infallible>(grpc::handle(node, req).await) }
                });
                let _ = http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(1024)
                    .serve_connection(io, service)
                    .await;
            }
        })
    };
    if let Some(listener) = p2p_listener {
        let node = node.clone();
        tokio::spawn(accept_loop(listener, move |io| {
            let node = node.clone();
            async move {
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let node = node.clone();
                    async move { Ok::<_, std::convert::Infallible>(peers::handle(node, req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
            }
        }));
    }
    match config.bootstrap.clone() {
        Some(bootstrap) => {
            tokio::spawn(peers::join(node.clone(), bootstrap));
        }
        None => node.ready.store(true, Ordering::Relaxed),
    }
    tokio::join!(rest, grpc);
    Ok(())
}
