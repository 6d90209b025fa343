//! The HTTP routes.
//!
//! | route | what |
//! |---|---|
//! | `GET /livez` | 200 while the process answers |
//! | `GET /readyz` | 200 when the source is connected, the catalog reachable and the rules loaded; else 503 with what is not |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /api/v1/status` | the run's summary so far, sizes, lag, rules |
//! | `GET /api/v1/alerts?limit=N` | the latest alert publications, newest first |
//! | `GET /api/v1/users/{id}` | a user's features, risk and recent risky events |
//! | `GET /api/v1/rules` | the rules: versions, module hashes, modes, counters |
//! | `GET /api/v1/history` | events/s and lag, a point a second (the dashboard's charts) |
//! | `POST /api/v1/reload` | admin: reload the policy file; the new version, or why it was refused |
//! | `POST /api/v1/rules/{id}/mode` | admin: `{"mode": "enforce" \| "shadow" \| "disabled"}` |
//! | `GET /` | the dashboard |
//!
//! Admin routes exist only when a token is configured (404 otherwise) and
//! answer 401 to a missing or wrong one. Request bodies are limited to
//! 16 KiB.

use std::sync::Arc;
use std::time::Duration;

use authpulse_engine::reload::ModeOverride;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::admin::AdminToken;
use super::live::Live;
use super::{dashboard, prometheus};

const MAX_BODY_BYTES: usize = 16 * 1024;
/// How long a question for the pipeline, or a reload, may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_ALERTS: usize = 50;
const MAX_ALERTS: usize = 500;

pub fn router(live: Arc<Live>, admin_token: Option<AdminToken>) -> Router {
    let mut app = Router::new()
        .route("/livez", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/users/{id}", get(user))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/history", get(history))
        .merge(dashboard::routes());
    if let Some(token) = admin_token {
        let admin = Router::new()
            .route("/api/v1/reload", post(reload))
            .route("/api/v1/rules/{id}/mode", post(set_mode))
            // On the admin routes only: any other path is a plain 404, not
            // a refused admin request.
            .route_layer(middleware::from_fn_with_state(
                Arc::new(token),
                require_token,
            ));
        app = app.merge(admin);
    }
    app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(live)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn require_token(
    State(token): State<Arc<AdminToken>>,
    request: Request,
    next: Next,
) -> Response {
    if token.admits(request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "admin request refused: missing or wrong bearer token");
    let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is needed");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn readyz(State(live): State<Arc<Live>>) -> Response {
    let not_ready = live.not_ready();
    if not_ready.is_empty() {
        return Json(json!({ "ready": true })).into_response();
    }
    let reasons: Vec<_> = not_ready
        .iter()
        .map(|(part, why)| json!({ "part": part, "reason": why }))
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "ready": false, "not_ready": reasons })),
    )
        .into_response()
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        prometheus::render(),
    )
        .into_response()
}

async fn status(State(live): State<Arc<Live>>) -> Response {
    Json(live.status()).into_response()
}

#[derive(Deserialize)]
struct AlertsQuery {
    limit: Option<usize>,
}

async fn alerts(State(live): State<Arc<Live>>, Query(query): Query<AlertsQuery>) -> Response {
    let limit = query.limit.unwrap_or(DEFAULT_ALERTS).min(MAX_ALERTS);
    Json(json!({ "alerts": live.recent_alerts(limit) })).into_response()
}

async fn history(State(live): State<Arc<Live>>) -> Response {
    Json(json!({ "points": live.history() })).into_response()
}

async fn user(State(live): State<Arc<Live>>, Path(id): Path<String>) -> Response {
    let asked =
        tokio::task::spawn_blocking(move || live.ask_user(&id, ANSWER_TIMEOUT).map(|v| (id, v)));
    match asked.await {
        Ok(Some((_, Some(view)))) => Json(view).into_response(),
        Ok(Some((id, None))) => error(StatusCode::NOT_FOUND, format!("no state for user `{id}`")),
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline did not answer (not running, or recovering)",
        ),
    }
}

async fn rules(State(live): State<Arc<Live>>) -> Response {
    let status = live.status();
    let rules: Vec<_> = status
        .rules
        .iter()
        .map(|rule| {
            let mut value = serde_json::to_value(rule).unwrap_or_default();
            if let (Some(object), Some(report)) =
                (value.as_object_mut(), status.summary.rules.get(&rule.id))
            {
                object.insert("evaluations".into(), report.evaluations.into());
                object.insert("hits".into(), report.hits.into());
                object.insert("failures".into(), report.failures.into());
                object.insert("time_ms".into(), report.time_ms.into());
            }
            value
        })
        .collect();
    Json(json!({
        "policy_version": status.summary.policy_version,
        "last_reload_at": status.last_reload_at,
        "last_reload_refused_at": status.last_reload_refused_at,
        "rules": rules,
    }))
    .into_response()
}

/// Waits for a reload's reply off the async workers.
async fn reply_of(
    answer: std::sync::mpsc::Receiver<authpulse_engine::reload::ReloadReply>,
) -> Option<Result<String, String>> {
    tokio::task::spawn_blocking(move || answer.recv_timeout(ANSWER_TIMEOUT).ok())
        .await
        .ok()
        .flatten()
}

fn no_watcher() -> Response {
    error(
        StatusCode::CONFLICT,
        "this run does not reload its policy (no policy file, or --no-policy-reload)",
    )
}

async fn reload(State(live): State<Arc<Live>>) -> Response {
    let Some(handle) = live.reload_handle() else {
        return no_watcher();
    };
    match reply_of(handle.reload()).await {
        Some(Ok(version)) => Json(json!({ "policy_version": version })).into_response(),
        Some(Err(why)) => error(StatusCode::UNPROCESSABLE_ENTITY, why),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the policy watcher did not answer",
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeRequest {
    mode: ModeOverride,
}

async fn set_mode(
    State(live): State<Arc<Live>>,
    Path(id): Path<String>,
    body: Result<Json<ModeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return error(
                rejection.status(),
                format!(
                    "{}: expected {{\"mode\": \"enforce\" | \"shadow\" | \"disabled\"}}",
                    rejection.body_text()
                ),
            );
        }
    };
    if !live.status().rules.iter().any(|rule| rule.id == id) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no rule `{id}` in the running policy"),
        );
    }
    let Some(handle) = live.reload_handle() else {
        return no_watcher();
    };
    match reply_of(handle.set_mode(&id, request.mode)).await {
        Some(Ok(version)) => Json(json!({
            "rule": id,
            "mode": request.mode,
            "policy_version": version,
        }))
        .into_response(),
        Some(Err(why)) if why.starts_with("no rule") => error(StatusCode::NOT_FOUND, why),
        Some(Err(why)) => error(StatusCode::UNPROCESSABLE_ENTITY, why),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the policy watcher did not answer",
        ),
    }
}
