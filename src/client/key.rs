//! `lyra key`: API keys for a cluster. A key is shown once, at creation; Orion keeps only its
//! metadata. Revoking reaches every gateway by pub/sub.

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use contract::ids::KeyId;
use control::api::{
    ApiKeyMetadata, ClusterAccess, CollectionAccess, CollectionRule, CreateApiKey, CreatedApiKey,
    KeyScope,
};
use http::Method;
use jiff::Timestamp;

use super::cluster::resolve;
use super::output;
use super::{CliError, Connection};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AccessArg {
    /// Everything, including creating and deleting collections.
    Manage,
    /// Reads only (searches included).
    ReadOnly,
}

/// `<collection>:r` or `<collection>:rw`.
fn collection_rule(s: &str) -> Result<CollectionRule, String> {
    let (name, access) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not <collection>:r or <collection>:rw"))?;
    let access = match access {
        "r" => CollectionAccess::Read,
        "rw" => CollectionAccess::ReadWrite,
        other => return Err(format!("{other:?} is not an access: use r or rw")),
    };
    Ok(CollectionRule {
        collection: name.to_owned(),
        access,
    })
}

/// When a key expires: an RFC 3339 time, or a span from now such as `30d`, `12h`, `1y`.
fn expiry(s: &str) -> Result<Timestamp, String> {
    if let Ok(at) = s.parse::<Timestamp>() {
        return Ok(at);
    }
    let span: jiff::Span = s.parse().map_err(|_| {
        format!("{s:?} is neither a time (2027-01-31T00:00:00Z) nor a span from now (30d, 12h)")
    })?;
    Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .checked_add(span)
        .map(|z| z.timestamp())
        .map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("scope").required(true).args(["access", "collection"])))]
pub struct CreateKey {
    /// The cluster's id (or its name, when only one cluster has it).
    cluster: String,
    /// A name to tell keys apart: 2 to 64 characters of [a-zA-Z0-9_-].
    #[arg(long)]
    name: String,
    /// Whole-cluster access.
    #[arg(long, value_enum)]
    access: Option<AccessArg>,
    /// Access to one collection, `<name>:r` or `<name>:rw`; repeat for more.
    #[arg(long, value_parser = collection_rule)]
    collection: Vec<CollectionRule>,
    /// When the key stops working: a span from now (30d, 12h) or an RFC 3339 time.
    /// Default: never.
    #[arg(long, value_parser = expiry)]
    expires: Option<Timestamp>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key. It is printed once and never stored: keep it.
    #[command(
        after_help = "Examples:\n  export QDRANT_API_KEY=$(lyra key create demo --name app --access manage -q)\n  \
        lyra key create demo --name reader --access read-only --expires 30d\n  \
        lyra key create demo --name shop --collection products:rw --collection reviews:r"
    )]
    Create(CreateKey),
    /// List a cluster's keys (metadata only: the keys themselves are never stored).
    #[command(after_help = "Example:\n  lyra key list demo")]
    List {
        /// The cluster's id (or its name, when only one cluster has it).
        cluster: String,
    },
    /// Revoke a key: every gateway refuses it within milliseconds.
    #[command(after_help = "Example:\n  lyra key revoke demo 0b7c9d1e-5f3a-4c2b-9e8d-7a6b5c4d3e2f")]
    Revoke {
        /// The cluster's id (or its name, when only one cluster has it).
        cluster: String,
        /// The key's id (`lyra key list`).
        key: KeyId,
    },
}

fn scope(access: &KeyScope) -> String {
    match access {
        KeyScope::Cluster(ClusterAccess::Manage) => "manage".into(),
        KeyScope::Cluster(ClusterAccess::ReadOnly) => "read-only".into(),
        KeyScope::Collections(rules) => rules
            .iter()
            .map(|r| {
                let a = match r.access {
                    CollectionAccess::Read => "r",
                    CollectionAccess::ReadWrite => "rw",
                };
                format!("{}:{a}", r.collection)
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn rows(keys: &[ApiKeyMetadata]) -> String {
    let mut t = output::table(["id", "name", "access", "ends with", "expires", "revoked"]);
    for k in keys {
        t.add_row([
            k.id.to_string(),
            k.name.clone(),
            scope(&k.access),
            k.postfix.clone(),
            output::or_dash(k.expires_at.map(output::when)),
            output::or_dash(k.revoked_at.map(output::when)),
        ]);
    }
    t.to_string()
}

pub async fn run(conn: &Connection, command: KeyCommand) -> Result<(), CliError> {
    let orion = conn.orion()?;
    let format = conn.format();
    let account = conn.account(&orion).await?;
    let keys_path = |cluster| format!("/api/v1/accounts/{account}/clusters/{cluster}/api-keys");
    match command {
        KeyCommand::Create(k) => {
            let cluster = resolve(&orion, account, &k.cluster).await?;
            let access = match k.access {
                Some(AccessArg::Manage) => KeyScope::Cluster(ClusterAccess::Manage),
                Some(AccessArg::ReadOnly) => KeyScope::Cluster(ClusterAccess::ReadOnly),
                None => KeyScope::Collections(k.collection),
            };
            let body = CreateApiKey {
                name: k.name,
                access,
                expires_at: k.expires,
            };
            let answer = orion
                .once::<_, CreatedApiKey>(Method::POST, &keys_path(cluster), Some(&body))
                .await?;
            let key = &answer.value;
            output::emit(
                format,
                &answer.json,
                || key.key.clone(),
                || {
                    format!(
                        "Key {} ({}) for cluster {cluster}, expires {}. It is shown only now; keep it:\n{}",
                        key.id,
                        scope(&key.access),
                        key.expires_at
                            .map_or_else(|| "never".to_owned(), |t| t.to_string()),
                        key.key
                    )
                },
            )
        }
        KeyCommand::List { cluster } => {
            let cluster = resolve(&orion, account, &cluster).await?;
            let answer = orion
                .get::<Vec<ApiKeyMetadata>>(&keys_path(cluster))
                .await?;
            let ids = || {
                let ids: Vec<String> = answer.value.iter().map(|k| k.id.to_string()).collect();
                ids.join("\n")
            };
            output::emit(format, &answer.json, ids, || rows(&answer.value))
        }
        KeyCommand::Revoke { cluster, key } => {
            let cluster = resolve(&orion, account, &cluster).await?;
            orion
                .change::<(), ()>(
                    Method::DELETE,
                    &format!("{}/{key}", keys_path(cluster)),
                    None,
                )
                .await?;
            let json = serde_json::json!({"id": key.to_string(), "revoked": true});
            output::emit(
                format,
                &json,
                || key.to_string(),
                || format!("Key {key} revoked: every gateway refuses it from now on."),
            )
        }
    }
}
