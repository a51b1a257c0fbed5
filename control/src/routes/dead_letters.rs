//! Commands the worker gave up on, for an operator to read and replay.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use contract::command::{Command, CommandEnvelope};
use contract::keyspace::{self, dead_letter};
use jiff::Timestamp;
use redis::streams::{StreamId, StreamRangeReply};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Principal;
use crate::extract::ApiPath;
use crate::problem::{ApiResult, Problem};
use crate::store::{StoreError, lua, reply_status};

/// A parked command.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// The entry's id in the dead-letter stream; replay with it.
    pub id: String,
    /// The command's name, e.g. `ProvisionDBCluster`, when it can be read.
    pub name: Option<String>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub cluster_id: Option<contract::ids::ClusterId>,
    /// Why the last attempt failed.
    pub error: String,
    pub attempts: u64,
    pub failed_at: String,
    /// The command envelope exactly as it was queued.
    pub command: String,
}

fn field(entry: &StreamId, name: &str) -> String {
    entry
        .map
        .get(name)
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        .unwrap_or_default()
}

fn to_dead_letter(entry: &StreamId) -> DeadLetter {
    let command = field(entry, dead_letter::COMMAND);
    let decoded = CommandEnvelope::from_json(command.as_bytes()).ok();
    DeadLetter {
        id: entry.id.clone(),
        name: decoded.as_ref().map(|e| e.command.name().to_owned()),
        cluster_id: decoded.as_ref().map(|e| e.command.cluster_id()),
        error: field(entry, dead_letter::ERROR),
        attempts: field(entry, dead_letter::ATTEMPTS).parse().unwrap_or(0),
        failed_at: field(entry, dead_letter::FAILED_AT),
        command,
    }
}

#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "operations",
    responses((status = 200, body = [DeadLetter]), (status = 403, body = Problem, description = "an account token: dead letters are the operator's")),
    security(("bearer" = [])))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<DeadLetter>>> {
    who.require_operator()?;
    let key = keyspace::dead_letter_stream();
    let reply: StreamRangeReply = state
        .store
        .run(|mut c| async move {
            redis::cmd("XRANGE")
                .arg(key)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
        })
        .await?;
    Ok(Json(reply.ids.iter().map(to_dead_letter).collect()))
}

#[derive(Debug, Deserialize)]
pub struct DeadLetterPath {
    pub id: String,
}

/// Whether `id` is a stream entry id Redis accepts, `<ms>-<seq>` with both parts within u64:
/// anything else names no dead letter (and Redis would refuse it as an argument).
fn is_stream_id(id: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u64>().is_ok()
    };
    id.split_once('-')
        .is_some_and(|(ms, seq)| part(ms) && part(seq))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// The command's new id on the command stream.
    pub stream_id: String,
}

#[utoipa::path(post, path = "/api/v1/dead-letters/{id}/replay", tag = "operations",
    params(("id" = String, Path, pattern = r"^[0-9]+-[0-9]+$", description = "the dead-letter entry id (a stream id, `<ms>-<seq>`)")),
    responses((status = 202, body = Replayed), (status = 403, body = Problem, description = "an account token: dead letters are the operator's"),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the parked command cannot be read, so it cannot be replayed")),
    security(("bearer" = [])))]
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    who: Principal,
    ApiPath(path): ApiPath<DeadLetterPath>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    who.require_operator()?;
    if !is_stream_id(&path.id) {
        return Err(Problem::not_found("dead letter"));
    }
    let key = keyspace::dead_letter_stream();
    let id = path.id.clone();
    let reply: StreamRangeReply = state
        .store
        .run(|mut c| async move {
            redis::cmd("XRANGE")
                .arg(key)
                .arg(&id)
                .arg(&id)
                .query_async(&mut c)
                .await
        })
        .await?;
    let entry = reply
        .ids
        .first()
        .map(to_dead_letter)
        .ok_or_else(|| Problem::not_found("dead letter"))?;
    let envelope = CommandEnvelope::from_json(entry.command.as_bytes()).map_err(|e| {
        Problem::conflict(format!(
            "the parked command cannot be read, so it cannot be replayed: {e}"
        ))
    })?;
    let phase = match envelope.command {
        Command::Provision(_) => "CREATING",
        Command::Resize(_) => "RESIZING",
        Command::Deprovision(_) => "DELETING",
    };
    let keys = (
        keyspace::dead_letter_stream(),
        keyspace::command_stream(),
        keyspace::cluster(envelope.command.cluster_id()),
    );
    let id = path.id.clone();
    let reply: Vec<String> = state
        .store
        .run(|mut c| async move {
            lua::REPLAY_DEAD_LETTER
                .key(keys.0)
                .key(keys.1)
                .key(keys.2)
                .arg(keyspace::PREFIX)
                .arg(Timestamp::now().to_string())
                .arg(id)
                .arg(phase)
                .invoke_async(&mut c)
                .await
        })
        .await?;
    match reply_status(&reply) {
        "REPLAYED" => Ok((
            StatusCode::ACCEPTED,
            Json(Replayed {
                stream_id: reply.get(1).cloned().unwrap_or_default(),
            }),
        )),
        "NOT_FOUND" => Err(Problem::not_found("dead letter")),
        _ => Err(StoreError::Reply(reply).into()),
    }
}
