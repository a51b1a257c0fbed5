//! The CA and certificates in a real Redis: created once, keys sealed, issuance announced.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is a failed test

use certs::store;
use contract::event::{self, ChangeEvent, Notification};
use contract::host::Tld;
use contract::keyspace;
use contract::seal::{Keyring, PlatformKey};
use testkit::RedisServer;

fn keyring() -> Keyring {
    Keyring::new(
        PlatformKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap(),
        vec![],
    )
}

#[tokio::test]
async fn the_ca_is_created_once_and_kept_sealed() {
    let redis = RedisServer::start().unwrap();
    let mut conn = redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ring = keyring();
    let first = store::load_or_create_ca(&mut conn, &ring).await.unwrap();
    let second = store::load_or_create_ca(&mut conn, &ring).await.unwrap();
    assert_eq!(first.cert_pem(), second.cert_pem());
    let raw: String = redis::cmd("GET")
        .arg(keyspace::ca())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(raw.contains("BEGIN CERTIFICATE"));
    assert!(
        !raw.contains("PRIVATE KEY"),
        "the CA key must be stored sealed"
    );
    // Without the platform key it cannot be opened.
    let other = Keyring::new(PlatformKey::generate().unwrap().0, vec![]);
    assert!(store::load_ca(&mut conn, &other).await.is_err());
}

#[tokio::test]
async fn the_gateway_key_opens_region_certificates_but_never_the_ca_key() {
    let redis = RedisServer::start().unwrap();
    let mut conn = redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(keyspace::regions())
        .arg("local:dev")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ring = keyring();
    let ca = store::load_or_create_ca(&mut conn, &ring).await.unwrap();
    let tld = Tld::new("localhost").unwrap();
    store::ensure_region(&mut conn, &ring, &ca, "local", "dev", &tld)
        .await
        .unwrap();

    // Exactly what GateKeeper's configuration builds from LYRA_GATEWAY_KEY.
    let gateway_key = ring.gateway_key().unwrap();
    let gateway = Keyring::serving_from_config(&gateway_key, &[]).unwrap();
    let certs = store::load_all(&mut conn, &gateway).await.unwrap();
    assert_eq!(certs.len(), 1);
    assert!(certs[0].key_pem.contains("PRIVATE KEY"));
    let refused = store::load_ca(&mut conn, &gateway).await.err().unwrap();
    assert!(
        refused.to_string().contains("holds no authority key"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_region_certificate_is_issued_once_announced_and_reloaded() {
    let redis = RedisServer::start().unwrap();
    let client = redis.client().unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut sub = client.get_connection().unwrap();
    let mut events = sub.as_pubsub();
    events.subscribe(keyspace::EVENTS_CHANNEL).unwrap();
    events
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(keyspace::regions())
        .arg("local:dev")
        .query_async(&mut conn)
        .await
        .unwrap();

    let ring = keyring();
    let tld = Tld::new("localhost").unwrap();
    let ca = store::load_or_create_ca(&mut conn, &ring).await.unwrap();
    let (cert, issued) = store::ensure_region(&mut conn, &ring, &ca, "local", "dev", &tld)
        .await
        .unwrap();
    assert!(issued);
    assert_eq!(cert.name, "*.dev.local.localhost");
    let message: String = events.get_message().unwrap().get_payload().unwrap();
    match event::decode(message.as_bytes()).unwrap() {
        Notification::Event(ChangeEvent::CertificateIssued {
            provider, region, ..
        }) => {
            assert_eq!((provider.as_str(), region.as_str()), ("local", "dev"));
        }
        other => panic!("unexpected event {other:?}"),
    }
    let (again, issued) = store::ensure_region(&mut conn, &ring, &ca, "local", "dev", &tld)
        .await
        .unwrap();
    assert!(!issued, "a fresh certificate is reused");
    assert_eq!(again.chain_pem, cert.chain_pem);
    let raw: String = redis::cmd("GET")
        .arg(keyspace::certificate("local", "dev"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!raw.contains("PRIVATE KEY"));
    let all = store::load_all(&mut conn, &ring).await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].certified_key().is_ok());
}

#[tokio::test]
async fn a_provided_certificate_is_kept_even_when_due() {
    let redis = RedisServer::start().unwrap();
    let mut conn = redis
        .client()
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ring = keyring();
    let tld = Tld::new("localhost").unwrap();
    let ca = store::load_or_create_ca(&mut conn, &ring).await.unwrap();
    // Another CA stands in for the operator's PKI.
    let theirs = certs::ca::PlatformCa::generate().unwrap();
    let offered = theirs.issue_region("local", "dev", &tld).unwrap();
    let mut provided = certs::provided::region_cert(
        "local",
        "dev",
        &tld,
        &offered.chain_pem,
        &offered.key_pem,
        jiff::Timestamp::now(),
    )
    .unwrap();
    // Due for renewal by Lyra's rule, had Lyra issued it.
    provided.not_after = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap();
    assert!(provided.needs_renewal(jiff::Timestamp::now()));
    store::save_region(&mut conn, &ring, &provided)
        .await
        .unwrap();

    let (kept, issued) = store::ensure_region(&mut conn, &ring, &ca, "local", "dev", &tld)
        .await
        .unwrap();
    assert!(!issued, "Lyra replaced a certificate the operator provided");
    assert!(kept.provided);
    assert_eq!(kept.chain_pem, offered.chain_pem);

    // A certificate Lyra issued and that is due is renewed, as before.
    let mut own = ca.issue_region("local", "dev", &tld).unwrap();
    own.not_after = provided.not_after;
    store::save_region(&mut conn, &ring, &own).await.unwrap();
    let (renewed, issued) = store::ensure_region(&mut conn, &ring, &ca, "local", "dev", &tld)
        .await
        .unwrap();
    assert!(issued && !renewed.provided);
}
