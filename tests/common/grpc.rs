//! A real gRPC client (tonic) for the end-to-end tests: what grpcio, tonic or any conforming
//! client sees, including how it reads a gateway's trailers-only refusal. Messages go as raw
//! protobuf bytes, so one client serves every service without generated code.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

/// Passes messages through as the bytes they are on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A TLS channel to `127.0.0.1:port` that trusts only `ca_pem`, offers `sni` in the
/// handshake and sends `authority` as `:authority` (they differ only to provoke a 421).
pub async fn channel(ca_pem: &str, port: u16, sni: &str, authority: &str) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(sni);
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("a valid endpoint")
        .origin(
            format!("https://{authority}:{port}")
                .parse()
                .expect("a valid origin"),
        )
        .tls_config(tls)
        .expect("a valid TLS config")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("the gateway's gRPC port accepts TLS with the platform CA")
}

/// One unary call of `path` (e.g. `/qdrant.Points/Search`) with `message`, sending `key` as
/// `api-key` metadata as Qdrant's clients do.
pub async fn unary(
    channel: &Channel,
    path: &'static str,
    key: Option<&str>,
    message: Bytes,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(message);
    if let Some(k) = key {
        let value = k
            .parse()
            .map_err(|_| Status::invalid_argument("key is not valid metadata"))?;
        request.metadata_mut().insert("api-key", value);
    }
    let path = http::uri::PathAndQuery::from_static(path);
    grpc.unary(request, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// The status code a call ended with (`Code::Ok` for a success).
pub async fn code(
    channel: &Channel,
    path: &'static str,
    key: Option<&str>,
    message: Bytes,
) -> (Code, String) {
    match unary(channel, path, key, message).await {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_owned()),
    }
}

/// One call for [`grpcio`]: a method, the key sent as `api-key`, the TLS name and the
/// `:authority`, and the raw message.
pub struct GrpcioCall<'a> {
    pub method: &'a str,
    pub key: Option<&'a str>,
    pub sni: &'a str,
    pub authority: &'a str,
    pub message: &'a [u8],
}

/// Makes `calls` with grpcio (the C-core client under qdrant-client), through
/// `tests/clients/grpcio_calls.py`, to `127.0.0.1:port` trusting only `ca_pem`: the status
/// name (`"OK"`, `"UNAUTHENTICATED"`, ...) and details of each. grpcio must be installed
/// (`pip install grpcio`; `.ci/run` installs it).
pub fn grpcio(ca_pem: &str, port: u16, calls: &[GrpcioCall<'_>]) -> Vec<(String, String)> {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("the CA written");
    let input: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| {
            serde_json::json!({
                "method": c.method, "key": c.key, "sni": c.sni, "authority": c.authority,
                "message_hex": c.message.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            })
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/grpcio_calls.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .env("GRPC_TARGET", format!("127.0.0.1:{port}"))
        .env("GRPC_CA", &ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 on PATH (grpcio's calls run in Python)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::Value::Array(input).to_string().as_bytes())
        .expect("calls written");
    let out = child.wait_with_output().expect("python3 ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "grpcio calls failed (is grpcio installed? `pip install grpcio`): {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON line per call");
            (
                v["code"].as_str().unwrap_or_default().to_owned(),
                v["details"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
