//! Keeping regional certificates current: every so often, each region's certificate is
//! checked and reissued when it is due (a third of its life left). Gateways load renewed
//! certificates from the announcement, without restart.

use std::time::Duration;

use contract::keyspace;
use redis::AsyncCommands;

use crate::AppState;

/// Checks every region once; returns how many certificates were issued.
pub async fn renew_due(state: &AppState) -> Result<usize, String> {
    let mut conn = state.store.conn().await.map_err(|e| e.to_string())?;
    let regions: Vec<String> = conn
        .smembers(keyspace::regions())
        .await
        .map_err(|e| e.to_string())?;
    let ca = crate::renewal::platform_ca(state, &mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut issued = 0;
    for r in regions {
        let Some((provider, region)) = r.split_once(':') else {
            continue;
        };
        match certs::store::ensure_region(
            &mut conn,
            &state.keyring,
            &ca,
            provider,
            region,
            &state.tld,
        )
        .await
        {
            Ok((cert, true)) => {
                issued += 1;
                tracing::info!(name = %cert.name, not_after = %cert.not_after, "renewed a region certificate");
            }
            Ok((cert, false)) if cert.provided && cert.needs_renewal(jiff::Timestamp::now()) => {
                tracing::warn!(name = %cert.name, not_after = %cert.not_after,
                    "a provided region certificate expires soon: import its successor (lyra certs import)");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(region = %r, error = %e, "cannot renew a region certificate"),
        }
    }
    Ok(issued)
}

/// Runs [`renew_due`] every `every`, for as long as the server runs.
pub async fn run(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = renew_due(&state).await {
            tracing::warn!(error = %e, "certificate renewal skipped this round");
        }
    }
}

/// The CA that signs regional certificates: the operator's files when given (and then put in
/// Redis, so gateways and `lyra certs ca` agree), else the one kept in Redis.
pub async fn platform_ca(
    state: &AppState,
    conn: &mut redis::aio::ConnectionManager,
) -> Result<std::sync::Arc<certs::ca::PlatformCa>, certs::CertError> {
    match &state.file_ca {
        Some(ca) => {
            certs::store::put_ca(conn, &state.keyring, ca).await?;
            Ok(ca.clone())
        }
        None => Ok(std::sync::Arc::new(
            certs::store::load_or_create_ca(conn, &state.keyring).await?,
        )),
    }
}
