//! Writes the fuzz targets' seed corpora, made from the same values the project's tests use,
//! under the fixtures of `lyra_fuzz` (so a seeded key verifies and a seeded route opens).
//!
//! `make-seeds <dir>` writes `<dir>/<target>/<name>` for every target.

use std::path::Path;

use contract::command::{
    Command, CommandEnvelope, DbConfiguration, DeprovisionDbCluster, ProvisionDbCluster,
    ResizeDbCluster,
};
use contract::event::ChangeEvent;
use contract::ids::{AccountId, KeyId};
use contract::keyscheme::{KeyAccess, KeyClaims, SecretKind};
use contract::resources::NodeResources;
use contract::route::{NodeEndpoint, RateLimits, RouteRecord, UpstreamCredentials};
use jiff::Timestamp;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let at = dir.join(target);
    std::fs::create_dir_all(&at)?;
    std::fs::write(at.join(name), bytes)
}

fn prefixed(byte: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![byte];
    v.extend_from_slice(rest);
    v
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args().nth(1) else {
        return Err("usage: make-seeds <dir>".into());
    };
    let dir = Path::new(&dir);
    let cluster = lyra_fuzz::cluster();
    let account = AccountId::from_uuid(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_00aa,
    ));

    // Hosts: what clients send, and what the host tests refuse.
    let hosts = [
        (0, format!("{cluster}.dev.local.localhost")),
        (0, format!("{cluster}.dev.local.localhost:6333")),
        (0, format!("{cluster}.DEV.Local.LOCALHOST")),
        (1, format!("{cluster}.eu-west-1.aws.cloud.example.com:443")),
        (2, format!("{cluster}.r.p.a")),
        (0, "127.0.0.1:6333".to_owned()),
        (0, "[::1]:6333".to_owned()),
        (
            0,
            format!(
                "{}.dev.local.localhost",
                cluster.to_string().replace('-', "")
            ),
        ),
        (0, format!("{cluster}.-dev.local.localhost")),
        (0, format!("{cluster}.dev.local.localhost:0")),
        (0, format!("{cluster}.dev.local.example.com")),
        (0, format!("x.{cluster}.dev.local.localhost")),
    ];
    for (i, (tld, host)) in hosts.iter().enumerate() {
        write(
            dir,
            "endpoint_host",
            &format!("seed-{i}"),
            &prefixed(*tld, host.as_bytes()),
        )?;
    }

    // Keys: issued by the fixture signer, every access, with and without an expiry.
    let signer = lyra_fuzz::signer();
    for (i, (access, expires)) in [
        (KeyAccess::Manage, None),
        (KeyAccess::ReadOnly, Some(1_900_000_000)),
        (KeyAccess::Collections, Some(1_800_000_100)),
        (KeyAccess::Manage, Some(1_700_000_000)),
    ]
    .into_iter()
    .enumerate()
    {
        let claims = KeyClaims {
            cluster_id: cluster,
            key_id: KeyId::from_uuid(uuid::Uuid::from_u128(i as u128 + 1)),
            expires_at: expires.map(Timestamp::from_second).transpose()?,
            access,
        };
        let key = signer.issue(&claims)?;
        write(
            dir,
            "api_key",
            &format!("key-{i}"),
            &prefixed(0, key.expose().as_bytes()),
        )?;
    }
    let mut edit = vec![1u8];
    edit.extend_from_slice(&[7u8; 16]);
    edit.extend_from_slice(&3600u32.to_be_bytes());
    edit.extend_from_slice(&[1, 10, b'A', 63, b'_']);
    write(dir, "api_key", "edit-0", &edit)?;
    write(dir, "api_key", "garbage-0", b"\0lyra_not-a-key")?;

    // Commands: one of each kind, as Orion writes them.
    let config = DbConfiguration {
        cluster_endpoint: format!("{cluster}.dev.local.localhost"),
        cluster_id: cluster,
        num_nodes: 3,
        node_configuration: NodeResources {
            cpu: 1000,
            memory: 2048,
            disk: 10,
        },
    };
    let commands = [
        Command::Provision(ProvisionDbCluster {
            account_id: account,
            cloud_provider: "local".into(),
            cloud_region: "dev".into(),
            cluster_id: cluster,
            cluster_name: "docs".into(),
            cluster_version: "1.18.3".into(),
            db_configuration: config.clone(),
        }),
        Command::Resize(ResizeDbCluster {
            account_id: account,
            cloud_provider: "local".into(),
            cloud_region: "dev".into(),
            cluster_id: cluster,
            generation: 2,
            db_configuration: config,
        }),
        Command::Deprovision(DeprovisionDbCluster {
            account_id: account,
            cloud_provider: "local".into(),
            cloud_region: "dev".into(),
            cluster_id: cluster,
        }),
    ];
    let now = Timestamp::from_second(1_790_000_000)?;
    for (i, command) in commands.into_iter().enumerate() {
        let key = (i == 0).then(|| "create-docs-1".to_owned());
        let json = CommandEnvelope::new(command, key, now).to_json()?;
        write(
            dir,
            "command_envelope",
            &format!("command-{i}"),
            json.as_bytes(),
        )?;
    }

    // Events: a route whose credentials open under the fixture keyring, and the others.
    let keyring = lyra_fuzz::keyring();
    let secret = lyra_fuzz::secret();
    let seal =
        |kind: SecretKind| keyring.seal(secret.expose().as_bytes(), &kind.seal_context(cluster));
    let route = RouteRecord {
        cluster_id: cluster,
        account_id: account,
        host: format!("{cluster}.dev.local.localhost"),
        phase: contract::cluster::Phase::Healthy,
        nodes: vec![
            NodeEndpoint {
                rest: "127.0.0.1:7001".into(),
                grpc: "127.0.0.1:7002".into(),
            },
            NodeEndpoint {
                rest: "[::1]:7003".into(),
                grpc: "node-1.lyra.svc:6334".into(),
            },
        ],
        credentials: UpstreamCredentials {
            read_write: seal(SecretKind::ReadWrite)?,
            read_only: seal(SecretKind::ReadOnly)?,
        },
        limits: RateLimits {
            key_rps: Some(10),
            key_burst: Some(0),
            cluster_rps: None,
            cluster_burst: None,
            max_in_flight: Some(1),
        },
        version: 42,
    };
    let events = [
        ChangeEvent::RouteUpserted {
            route: Box::new(route.clone()),
        },
        ChangeEvent::RouteRemoved {
            cluster_id: cluster,
            host: route.host.clone(),
            version: 43,
        },
        ChangeEvent::KeyRevoked {
            cluster_id: cluster,
            key_id: KeyId::from_uuid(uuid::Uuid::from_u128(9)),
            expires_at: Some(now),
            version: 44,
        },
        ChangeEvent::CertificateIssued {
            provider: "local".into(),
            region: "dev".into(),
            version: 45,
        },
    ];
    for (i, e) in events.iter().enumerate() {
        write(
            dir,
            "change_event",
            &format!("event-{i}"),
            e.to_json()?.as_bytes(),
        )?;
    }
    write(
        dir,
        "change_event",
        "unknown",
        br#"{"type":"cluster.renamed","version":1}"#,
    )?;

    // Paths: the scope tests' requests.
    let paths: [(u8, &str); 12] = [
        (0, "/"),
        (0, "/collections"),
        (0, "/collections/docs"),
        (3, "/collections/docs"),
        (2, "/collections/docs/points/search"),
        (2, "/collections/docs/points/query/batch"),
        (3, "/collections/docs/points"),
        (2, "/collections/docs/points/delete"),
        (2, "/snapshots/recover"),
        (0, "/cluster"),
        (4, "/collections/docs/snapshots/s1"),
        (0, "/healthz"),
    ];
    for (i, (method, path)) in paths.iter().enumerate() {
        write(
            dir,
            "scope",
            &format!("path-{i}"),
            &prefixed(*method, path.as_bytes()),
        )?;
    }

    // Sealed values: as stored, for each context; and an edit of a fresh one.
    for (i, kind) in [SecretKind::ReadWrite, SecretKind::ReadOnly]
        .into_iter()
        .enumerate()
    {
        let json = serde_json::to_vec(&seal(kind)?)?;
        write(
            dir,
            "sealed_open",
            &format!("sealed-{i}"),
            &prefixed(0, &json),
        )?;
    }
    let ca = serde_json::to_vec(&keyring.seal(b"-----BEGIN PRIVATE KEY-----", "lyra/ca/key")?)?;
    write(dir, "sealed_open", "sealed-ca", &prefixed(0, &ca))?;
    write(
        dir,
        "sealed_open",
        "edit-0",
        &[1, 32, 0, 40, b'x', 0, 150, b'A'],
    )?;
    Ok(())
}
