//! The Qdrant release `lyra dev` downloads when no Qdrant is installed: the pinned version,
//! the official archive of each platform with its sha256, and the download itself (verified
//! before anything is unpacked, unpacked into the cache atomically).
//!
//! The digests are those of the official GitHub release assets of the pinned tag. Changing
//! the version means changing every digest with it; nothing is ever trusted unverified.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

use crate::client::error_chain;

/// The Qdrant version `lyra dev` downloads.
pub const VERSION: &str = "1.18.2";

/// Where official releases are served: `<base>/v<VERSION>/<archive>`.
pub const DEFAULT_BASE_URL: &str = "https://github.com/qdrant/qdrant/releases/download";

/// One platform's official archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub os: &'static str,
    pub arch: &'static str,
    pub archive: &'static str,
    pub sha256: &'static str,
}

/// The official archives of [`VERSION`] and their sha256 (as `std::env::consts` names the
/// platforms). Linux on aarch64 has only a musl build upstream.
pub const ASSETS: [Asset; 4] = [
    Asset {
        os: "linux",
        arch: "x86_64",
        archive: "qdrant-x86_64-unknown-linux-gnu.tar.gz",
        sha256: "cd619c61d8d32dd176af88cf498714ecb765b7df9021d691862478d6ac35392c",
    },
    Asset {
        os: "linux",
        arch: "aarch64",
        archive: "qdrant-aarch64-unknown-linux-musl.tar.gz",
        sha256: "2ead5bb8206289b67c930f0eb29123228ddb43c2344551a0947cbc9046f92c6c",
    },
    Asset {
        os: "macos",
        arch: "x86_64",
        archive: "qdrant-x86_64-apple-darwin.tar.gz",
        sha256: "d395eb3d96c2196bbb8c611b800842928fb8b4997924b585bf42ce0ceb90fa1f",
    },
    Asset {
        os: "macos",
        arch: "aarch64",
        archive: "qdrant-aarch64-apple-darwin.tar.gz",
        sha256: "859f487e316ae1bda3b5d7c1e129a0a7344424d992503c188979ca6ac1b47253",
    },
];

/// The archive for `os`/`arch`, if upstream publishes one.
pub fn asset_for(os: &str, arch: &str) -> Option<Asset> {
    ASSETS.into_iter().find(|a| a.os == os && a.arch == arch)
}

/// The archive for this machine.
pub fn this_platform() -> Option<Asset> {
    asset_for(std::env::consts::OS, std::env::consts::ARCH)
}

/// Why a download did not produce a binary. Each says what failed; the caller adds what to do.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} redirected more than {MAX_REDIRECTS} times")]
    Redirects { url: String },
    #[error(
        "{url} is not the expected file: its sha256 is {actual}, the pinned release's is {expected}"
    )]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("the archive from {url} is unreadable or holds no `qdrant` file: {reason}")]
    Archive { url: String, reason: String },
    #[error("cannot write the cache {}: {reason}", path.display())]
    Cache { path: PathBuf, reason: String },
}

const MAX_REDIRECTS: usize = 5;
/// Qdrant's archive is ~30 MiB; a release that grew 10x would be worth a look anyway.
const MAX_ARCHIVE_BYTES: u64 = 512 * 1024 * 1024;

/// Fetches `url` (http or https, following redirects: GitHub serves assets from another host),
/// with a progress bar on a terminal.
pub async fn fetch(url: &str, timeout: Duration) -> Result<Vec<u8>, DownloadError> {
    let tls =
        crate::client::tls_client_config(true, None).map_err(|e| DownloadError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let unreachable = |url: &str, reason: String| DownloadError::Unreachable {
        url: url.to_owned(),
        reason,
    };
    let mut current = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let uri: http::Uri = current
            .parse()
            .map_err(|e: http::uri::InvalidUri| unreachable(&current, e.to_string()))?;
        let request = http::Request::get(uri.clone())
            .header(
                http::header::USER_AGENT,
                concat!("lyra/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| unreachable(&current, e.to_string()))?;
        let response = tokio::time::timeout(timeout, client.request(request))
            .await
            .map_err(|_| unreachable(&current, format!("no answer within {timeout:?}")))?
            .map_err(|e| unreachable(&current, error_chain(&e)))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| unreachable(&current, "a redirect without a Location".into()))?;
            current = resolve_location(&uri, location);
            continue;
        }
        if !status.is_success() {
            return Err(DownloadError::Status {
                url: current,
                status: status.as_u16(),
            });
        }
        let total = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bar = progress_bar(total);
        let mut body = response.into_body();
        let mut bytes = Vec::with_capacity(total.unwrap_or(0).min(MAX_ARCHIVE_BYTES) as usize);
        loop {
            let frame = tokio::time::timeout(timeout, body.frame())
                .await
                .map_err(|_| unreachable(&current, format!("stalled for {timeout:?}")))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| unreachable(&current, error_chain(&e)))?;
            if let Ok(data) = frame.into_data() {
                bytes.extend_from_slice(&data);
                bar.inc(data.len() as u64);
                if bytes.len() as u64 > MAX_ARCHIVE_BYTES {
                    return Err(DownloadError::Archive {
                        url: current,
                        reason: format!("larger than {MAX_ARCHIVE_BYTES} bytes"),
                    });
                }
            }
        }
        bar.finish_and_clear();
        return Ok(bytes);
    }
    Err(DownloadError::Redirects {
        url: url.to_owned(),
    })
}

/// A Location header made absolute against the URI that answered with it.
fn resolve_location(base: &http::Uri, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{location}")
    }
}

fn progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    // indicatif draws nothing when stderr is not a terminal.
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "  downloading Qdrant {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks `archive` against `expected` (hex sha256), then unpacks its `qdrant` executable to
/// `dest` (created atomically: a temporary file in the same directory, then renamed, so a
/// crash never leaves a half-written binary that the next start would trust).
pub fn install(
    url: &str,
    archive: &[u8],
    expected: &str,
    dest: &Path,
) -> Result<(), DownloadError> {
    let actual = sha256_hex(archive);
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(DownloadError::Checksum {
            url: url.to_owned(),
            expected: expected.trim().to_ascii_lowercase(),
            actual,
        });
    }
    let bad = |reason: String| DownloadError::Archive {
        url: url.to_owned(),
        reason,
    };
    let binary = qdrant_in(archive).map_err(bad)?;
    let cache = |path: &Path, e: std::io::Error| DownloadError::Cache {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let dir = dest.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| cache(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".qdrant-")
        .tempfile_in(dir)
        .map_err(|e| cache(dir, e))?;
    tmp.write_all(&binary).map_err(|e| cache(dest, e))?;
    tmp.as_file().sync_all().map_err(|e| cache(dest, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| cache(dest, e))?;
    }
    tmp.persist(dest).map_err(|e| cache(dest, e.error))?;
    Ok(())
}

/// The bytes of the regular file named `qdrant` in a `.tar.gz`. Links and other entries are
/// ignored: the release holds one plain executable.
fn qdrant_in(archive: &[u8]) -> Result<Vec<u8>, String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let entries = tar.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let is_qdrant = entry
            .path()
            .map_err(|e| e.to_string())?
            .file_name()
            .is_some_and(|n| n == "qdrant");
        if is_qdrant && entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
            return Ok(bytes);
        }
    }
    Err("no regular file named qdrant".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targz(name: &str, content: &[u8]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, name, content).unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn every_platform_the_issue_names_has_an_archive_and_a_well_formed_digest() {
        for (os, arch) in [
            ("linux", "x86_64"),
            ("linux", "aarch64"),
            ("macos", "x86_64"),
            ("macos", "aarch64"),
        ] {
            let a = asset_for(os, arch).unwrap();
            assert!(a.archive.ends_with(".tar.gz") && a.archive.contains(arch));
            assert_eq!(a.sha256.len(), 64);
            assert!(a.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert!(asset_for("windows", "x86_64").is_none());
        let digests: std::collections::HashSet<_> = ASSETS.iter().map(|a| a.sha256).collect();
        assert_eq!(digests.len(), ASSETS.len(), "a digest copied twice");
    }

    #[test]
    fn a_verified_archive_is_unpacked_and_a_tampered_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let archive = targz("qdrant", b"#!/bin/sh\necho qdrant 9.9.9\n");
        let dest = dir.path().join("v/qdrant");
        let digest = sha256_hex(&archive);
        install("u", &archive, &digest, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"#!/bin/sh\necho qdrant 9.9.9\n");
        let other = dir.path().join("w/qdrant");
        let mut tampered = archive.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let e = install("u", &tampered, &digest, &other).unwrap_err();
        assert!(matches!(e, DownloadError::Checksum { .. }), "{e}");
        assert!(!other.exists());
        assert!(
            !dir.path().join("w").exists(),
            "nothing created before the check"
        );
    }

    #[test]
    fn an_archive_without_qdrant_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = targz("README.md", b"hello");
        let dest = dir.path().join("qdrant");
        let e = install("u", &archive, &sha256_hex(&archive), &dest).unwrap_err();
        assert!(
            e.to_string().contains("no regular file named qdrant"),
            "{e}"
        );
        assert!(!dest.exists());
    }

    #[test]
    fn relative_redirects_resolve_against_the_answering_url() {
        let base: http::Uri = "https://github.com/qdrant/qdrant/releases/download/v1/a.tar.gz"
            .parse()
            .unwrap();
        assert_eq!(
            resolve_location(&base, "https://cdn.example/x"),
            "https://cdn.example/x"
        );
        assert_eq!(resolve_location(&base, "/b"), "https://github.com/b");
        assert_eq!(
            resolve_location(&base, "c.tar.gz"),
            "https://github.com/qdrant/qdrant/releases/download/v1/c.tar.gz"
        );
    }
}
