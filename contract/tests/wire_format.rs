//! Commands and events on the wire: round trips, a fixed example in the seed's shape, and
//! typed errors (never panics) for anything unknown or malformed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use contract::cluster::Phase;
use contract::command::{
    Command, CommandDecodeError, CommandEnvelope, DbConfiguration, DeprovisionDbCluster,
    ProvisionDbCluster, ResizeDbCluster,
};
use contract::event::{self, ChangeEvent, EventDecodeError, Notification};
use contract::ids::{AccountId, ClusterId, KeyId};
use contract::resources::NodeResources;
use contract::route::{NodeEndpoint, RateLimits, RouteRecord, UpstreamCredentials};
use contract::seal::{Keyring, PlatformKey};
use jiff::Timestamp;
use serde_json::{Value, json};

const ACCOUNT: &str = "5a1f8f0e-2b7c-4d3e-9f10-6c2b1a0d9e8f";
const CLUSTER: &str = "0b5c3e4a-9d2f-4c1e-8a7b-3f6d2e1c0a99";

fn account() -> AccountId {
    ACCOUNT.parse().unwrap()
}

fn cluster() -> ClusterId {
    CLUSTER.parse().unwrap()
}

fn db_configuration(num_nodes: u32) -> DbConfiguration {
    DbConfiguration {
        cluster_endpoint: format!("{CLUSTER}.eu-west-1.aws.localhost"),
        cluster_id: cluster(),
        num_nodes,
        node_configuration: NodeResources {
            cpu: 2000,
            memory: 8192,
            disk: 100,
        },
    }
}

fn every_command() -> Vec<Command> {
    vec![
        Command::Provision(ProvisionDbCluster {
            account_id: account(),
            cloud_provider: "aws".into(),
            cloud_region: "eu-west-1".into(),
            cluster_id: cluster(),
            cluster_name: "search-prod".into(),
            cluster_version: "v1.18.3".into(),
            db_configuration: db_configuration(3),
        }),
        Command::Resize(ResizeDbCluster {
            account_id: account(),
            cloud_provider: "aws".into(),
            cloud_region: "eu-west-1".into(),
            cluster_id: cluster(),
            generation: 2,
            db_configuration: db_configuration(5),
        }),
        Command::Deprovision(DeprovisionDbCluster {
            account_id: account(),
            cloud_provider: "aws".into(),
            cloud_region: "eu-west-1".into(),
            cluster_id: cluster(),
        }),
    ]
}

#[test]
fn every_command_round_trips() {
    for (i, command) in every_command().into_iter().enumerate() {
        let key = (i == 0).then(|| "idem-1".to_owned());
        let envelope = CommandEnvelope::new(command, key, Timestamp::now());
        let json = envelope.to_json().unwrap();
        let back = CommandEnvelope::from_json(json.as_bytes()).unwrap();
        assert_eq!(back, envelope);
        let value: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["type"], "COMMAND");
        assert_eq!(value["name"], envelope.command.name());
        assert_eq!(value["schema_id"], envelope.command.schema_id());
        assert_eq!(envelope.id.as_uuid().get_version_num(), 7);
    }
}

/// The seed's example, field for field: this is what other systems may already produce.
fn provision_example() -> Value {
    json!({
        "id": "019a4f6e-7c1d-7b2a-8e3f-4a5b6c7d8e9f",
        "name": "ProvisionDBCluster",
        "schema_id": 701,
        "type": "COMMAND",
        "created_at": "2026-11-23T10:00:00Z",
        "account_id": ACCOUNT,
        "idempotency_key": null,
        "payload": {
            "account_id": ACCOUNT,
            "cloud_provider": "aws",
            "cloud_region": "eu-west-1",
            "cluster_id": CLUSTER,
            "cluster_name": "search-prod",
            "cluster_version": "v1.18.3",
            "db_configuration": {
                "cluster_endpoint": format!("{CLUSTER}.eu-west-1.aws.localhost"),
                "cluster_id": CLUSTER,
                "num_nodes": 3,
                "node_configuration": {"cpu": 2000, "memory": 8192, "disk": 100}
            }
        }
    })
}

#[test]
fn the_seed_example_decodes_and_encodes_back_the_same() {
    let example = provision_example();
    let envelope = CommandEnvelope::from_json(example.to_string().as_bytes()).unwrap();
    assert_eq!(envelope.command, every_command()[0]);
    assert_eq!(envelope.created_at.to_string(), "2026-11-23T10:00:00Z");
    let again: Value = serde_json::from_str(&envelope.to_json().unwrap()).unwrap();
    assert_eq!(again, example);
}

fn decode(v: &Value) -> CommandDecodeError {
    CommandEnvelope::from_json(v.to_string().as_bytes()).unwrap_err()
}

#[test]
fn unknown_names_and_schemas_are_typed_errors() {
    let mut v = provision_example();
    v["name"] = "MigrateDBCluster".into();
    assert!(
        matches!(decode(&v), CommandDecodeError::UnknownCommand { name } if name == "MigrateDBCluster")
    );

    let mut v = provision_example();
    v["schema_id"] = 799.into();
    assert!(matches!(
        decode(&v),
        CommandDecodeError::UnknownSchema { schema_id: 799, .. }
    ));

    let mut v = provision_example();
    v["type"] = "EVENT".into();
    assert!(matches!(decode(&v), CommandDecodeError::NotACommand(t) if t == "EVENT"));
}

#[test]
fn malformed_commands_are_typed_errors() {
    for bytes in [&b""[..], b"null", b"[]", b"{", b"\xff\xfe", b"{\"id\":1}"] {
        assert!(matches!(
            CommandEnvelope::from_json(bytes),
            Err(CommandDecodeError::Envelope(_))
        ));
    }

    let mut v = provision_example();
    v["payload"]["db_configuration"]["num_nodes"] = "three".into();
    assert!(matches!(
        decode(&v),
        CommandDecodeError::Payload {
            name: "ProvisionDBCluster",
            ..
        }
    ));

    let mut v = provision_example();
    v["payload"]["surprise"] = true.into();
    assert!(matches!(decode(&v), CommandDecodeError::Payload { .. }));

    let mut v = provision_example();
    v["payload"].as_object_mut().unwrap().remove("cluster_id");
    assert!(matches!(decode(&v), CommandDecodeError::Payload { .. }));

    // A resize payload under the provision name is not a provision.
    let mut v = provision_example();
    v["payload"] = json!({"account_id": ACCOUNT, "cloud_provider": "aws", "cloud_region": "x",
        "cluster_id": CLUSTER, "generation": 2, "db_configuration": v["payload"]["db_configuration"]});
    assert!(matches!(decode(&v), CommandDecodeError::Payload { .. }));

    let mut v = provision_example();
    v["account_id"] = AccountId::new().to_string().into();
    assert!(matches!(
        decode(&v),
        CommandDecodeError::AccountMismatch { .. }
    ));

    let mut v = provision_example();
    v["id"] = "not-a-uuid".into();
    assert!(matches!(decode(&v), CommandDecodeError::Envelope(_)));
}

fn route(version: u64) -> RouteRecord {
    let ring = Keyring::new(PlatformKey::generate().unwrap().0, vec![]);
    RouteRecord {
        cluster_id: cluster(),
        account_id: account(),
        host: format!("{CLUSTER}.eu-west-1.aws.localhost"),
        phase: Phase::Healthy,
        nodes: vec![NodeEndpoint {
            rest: "127.0.0.1:7001".into(),
            grpc: "127.0.0.1:7002".into(),
        }],
        credentials: UpstreamCredentials {
            read_write: ring.seal(b"rw", "ctx-rw").unwrap(),
            read_only: ring.seal(b"ro", "ctx-ro").unwrap(),
        },
        limits: RateLimits {
            key_rps: Some(100),
            max_in_flight: Some(64),
            ..RateLimits::default()
        },
        version,
    }
}

fn every_event() -> Vec<ChangeEvent> {
    vec![
        ChangeEvent::RouteUpserted {
            route: Box::new(route(7)),
        },
        ChangeEvent::RouteRemoved {
            cluster_id: cluster(),
            host: format!("{CLUSTER}.eu-west-1.aws.localhost"),
            version: 8,
        },
        ChangeEvent::KeyRevoked {
            cluster_id: cluster(),
            key_id: KeyId::new(),
            expires_at: Some(Timestamp::from_second(1_893_456_000).unwrap()),
            version: 9,
        },
        ChangeEvent::KeyRevoked {
            cluster_id: cluster(),
            key_id: KeyId::new(),
            expires_at: None,
            version: 10,
        },
        ChangeEvent::CertificateIssued {
            provider: "aws".into(),
            region: "eu-west-1".into(),
            version: 11,
        },
    ]
}

#[test]
fn every_event_round_trips() {
    let mut seen = std::collections::HashSet::new();
    for e in every_event() {
        let json = e.to_json().unwrap();
        let tag: Value = serde_json::from_str(&json).unwrap();
        seen.insert(tag["type"].as_str().unwrap().to_owned());
        match event::decode(json.as_bytes()).unwrap() {
            Notification::Event(back) => {
                assert_eq!(back.version(), e.version());
                assert_eq!(back, e);
            }
            Notification::Unknown { event_type } => panic!("{event_type} read as unknown"),
        }
    }
    assert_eq!(
        seen.len(),
        ChangeEvent::TYPES.len(),
        "an event type is untested"
    );
}

#[test]
fn unknown_event_types_are_tolerated() {
    let n = event::decode(br#"{"type":"cluster.hibernated","cluster_id":"x","v":3}"#).unwrap();
    assert_eq!(
        n,
        Notification::Unknown {
            event_type: "cluster.hibernated".into()
        }
    );
}

#[test]
fn malformed_events_are_typed_errors() {
    for bytes in [&b""[..], b"{}", b"[]", b"{\"type\":3}", b"not json"] {
        assert!(matches!(
            event::decode(bytes),
            Err(EventDecodeError::NoType(_))
        ));
    }
    let err = event::decode(br#"{"type":"route.removed","cluster_id":"nope"}"#).unwrap_err();
    assert!(
        matches!(err, EventDecodeError::Malformed { event_type, .. } if event_type == "route.removed")
    );
}

#[test]
fn newer_routes_supersede_older_ones_only() {
    let (old, new) = (route(3), route(4));
    assert!(old.is_superseded_by(&new));
    assert!(!new.is_superseded_by(&old));
    assert!(!new.is_superseded_by(&new.clone()));
}

#[test]
fn routes_never_carry_a_plain_secret() {
    let json = serde_json::to_string(&route(1)).unwrap();
    assert!(json.contains("\"kid\""));
    // b"rw" sealed is not "rw" in the clear anywhere in the credentials.
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_ne!(v["credentials"]["read_write"]["ciphertext"], "rw");
}
