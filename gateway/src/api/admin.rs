//! The admin API, authenticated by a bearer token separate from rider tokens: operators, fare
//! data, terminals, the deny list and issuer key rotation. Every change takes effect on this node
//! at once and on other nodes within `taps.refresh_interval_ms`.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use turnpike_wire::{Currency, Money};

use super::{bearer, check_id, sha256, ValidJson};
use crate::error::{ApiError, ApiResult};
use crate::network::{build_network, FareData, Mode};
use crate::store::{KeyStatus, TerminalStatus};
use crate::store::{OperatorRow, TerminalRow};
use crate::AppState;
pub use turnpike_wire::api::admin::{
    DenySpec, DenyView, FareLoaded, FareWarning, KeyView, OperatorSpec, OperatorView,
    RotateRequest, TerminalSpec, TerminalView,
};
use turnpike_wire::ident;

/// A GTFS feed's fare files for a large network are a few MiB.
const FARE_DATA_BYTES_MAX: usize = 16 * 1024 * 1024;
const ADMIN_BODY_BYTES_MAX: usize = 16 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/admin/operators",
            post(create_operator).get(list_operators),
        )
        .route(
            "/v1/admin/operators/{operator_id}/fares",
            put(load_fares).layer(DefaultBodyLimit::max(FARE_DATA_BYTES_MAX)),
        )
        .route(
            "/v1/admin/terminals",
            post(register_terminal).get(list_terminals),
        )
        .route(
            "/v1/admin/terminals/{terminal_id}/revoke",
            post(revoke_terminal),
        )
        .route(
            "/v1/admin/terminals/{terminal_id}/reinstate",
            post(reinstate_terminal),
        )
        .route("/v1/admin/deny-list", post(deny_add).get(deny_list))
        .route(
            "/v1/admin/deny-list/{kind}/{subject_id}",
            delete(deny_remove),
        )
        .route("/v1/admin/issuer-keys", get(list_keys))
        .route("/v1/admin/issuer-keys/stage", post(stage_key))
        .route("/v1/admin/issuer-keys/rotate", post(rotate_keys))
        // route_layer: only matched admin routes demand the admin token, so an unknown path is a
        // 404 for everyone rather than a 401.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ))
        .layer(DefaultBodyLimit::max(ADMIN_BODY_BYTES_MAX))
        .with_state(state)
}

pub(crate) async fn require_admin(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    let ok = bearer(req.headers()).is_some_and(|t| {
        // Compare digests, so the comparison time does not depend on how much of the token matched.
        let digest = sha256(t.as_bytes());
        digest
            .iter()
            .zip(state.admin_token_sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if !ok {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

async fn create_operator(
    State(state): State<AppState>,
    ValidJson(spec): ValidJson<OperatorSpec>,
) -> ApiResult<StatusCode> {
    check_id("operator_id", &spec.operator_id)?;
    super::check_input(
        "invalid_name",
        "name",
        ident::check_name(&spec.name, super::NAME_CHARS_MAX),
    )?;
    let mode = Mode::parse(&spec.mode)
        .ok_or_else(|| ApiError::unprocessable("invalid_mode", "mode must be metro or toll"))?;
    let time_zone = spec.time_zone.unwrap_or_else(|| "Asia/Shanghai".into());
    jiff::tz::TimeZone::get(&time_zone).map_err(|_| {
        ApiError::unprocessable(
            "unknown_time_zone",
            format!("unknown time zone {time_zone:?}"),
        )
    })?;
    let currency = Currency::parse(spec.currency.as_deref().unwrap_or("CNY"))
        .map_err(|e| ApiError::unprocessable("unknown_currency", e.to_string()))?;
    if let Some(cap) = &spec.daily_cap {
        if cap.currency() != currency || !cap.is_positive() {
            return Err(ApiError::unprocessable(
                "invalid_daily_cap",
                "daily_cap must be positive and in the operator's currency",
            ));
        }
    }
    let row = OperatorRow {
        operator_id: spec.operator_id,
        name: spec.name,
        mode: mode.as_str().into(),
        time_zone,
        currency: currency.code().into(),
        daily_cap_minor: spec.daily_cap.map(|c| c.to_minor()),
        created_at_ms: state.clock.now_ms(),
    };
    if !state.store.insert_operator(&row).await? {
        return Err(ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "operator_exists",
            message: format!("operator {} already exists", row.operator_id),
        });
    }
    Ok(StatusCode::CREATED)
}

async fn list_operators(State(state): State<AppState>) -> ApiResult<Json<Vec<OperatorView>>> {
    let rows = state.store.operators().await?;
    Ok(Json(
        rows.into_iter()
            .map(|o| OperatorView {
                fare_version: state.networks.get(&o.operator_id).map(|n| n.fare_version),
                operator_id: o.operator_id,
                name: o.name,
                mode: o.mode,
                time_zone: o.time_zone,
                daily_cap: Currency::parse(&o.currency)
                    .ok()
                    .and_then(|c| Some(Money::from_minor(o.daily_cap_minor?, c))),
                currency: o.currency,
            })
            .collect(),
    ))
}

/// Loads fare data: `{"format": "gtfs"|"matrix"|"toll"|"demo_metro"|"demo_toll", "files": {name: text}}`.
/// The data is parsed before anything is stored; a bad file is a 422 naming file, line and reason.
async fn load_fares(
    State(state): State<AppState>,
    Path(operator_id): Path<String>,
    ValidJson(data): ValidJson<FareData>,
) -> ApiResult<(StatusCode, Json<FareLoaded>)> {
    let operator = state
        .store
        .operators()
        .await?
        .into_iter()
        .find(|o| o.operator_id == operator_id)
        .ok_or_else(|| ApiError::NotFound(format!("no operator {operator_id}")))?;
    let network = build_network(operator, &data, 0).map_err(|e| {
        // A load past one of the fare limits (stops_max, rules_max, feed_bytes_max, ...) has its
        // own code, so a client can tell "too big for this gateway" from "malformed".
        let code = match e.downcast_ref::<turnpike_fares::LoadError>() {
            Some(load) if matches!(load.reason, turnpike_fares::LoadReason::Limit { .. }) => {
                "fare_limit_exceeded"
            }
            _ => "invalid_fare_data",
        };
        ApiError::unprocessable(code, format!("{e:#}"))
    })?;
    // Stations and plazas become terminals' locations, journeys' ends and statement lines:
    // their ids follow the location rule and their names are plain text.
    for (id, name) in network.locations() {
        ident::check_location_id(id).map_err(|e| {
            ApiError::unprocessable("invalid_fare_data", format!("location id {id:?} {e}"))
        })?;
        if !name.is_empty() {
            ident::check_text(name, super::NAME_CHARS_MAX).map_err(|e| {
                ApiError::unprocessable(
                    "invalid_fare_data",
                    format!("the name of location {id} {e}"),
                )
            })?;
        }
    }
    let warnings = network
        .fare_warnings()
        .iter()
        .map(|w| FareWarning {
            file: w.file.clone(),
            line: w.line,
            column: w.column.clone(),
            message: w.message.clone(),
        })
        .collect();
    let files_json = serde_json::to_string(&data).map_err(|e| ApiError::Internal(e.into()))?;
    let version = state
        .store
        .insert_fare_data(
            &operator_id,
            &data.format,
            &files_json,
            state.clock.now_ms(),
        )
        .await?;
    state.networks.reload(&state.store).await?;
    Ok((StatusCode::CREATED, Json(FareLoaded { version, warnings })))
}

async fn register_terminal(
    State(state): State<AppState>,
    ValidJson(spec): ValidJson<TerminalSpec>,
) -> ApiResult<StatusCode> {
    check_id("terminal_id", &spec.terminal_id)?;
    check_id("operator_id", &spec.operator_id)?;
    super::check_input(
        "invalid_id",
        "location_id",
        ident::check_location_id(&spec.location_id),
    )?;
    let network = state.networks.get(&spec.operator_id).ok_or_else(|| {
        ApiError::unprocessable(
            "network_not_configured",
            format!("operator {} has no fare data loaded", spec.operator_id),
        )
    })?;
    if !network.has_location(&spec.location_id) {
        return Err(ApiError::unprocessable(
            "unknown_station",
            format!(
                "{} is not a station or plaza of {}",
                spec.location_id, spec.operator_id
            ),
        ));
    }
    let existing = state
        .store
        .terminals()
        .await?
        .into_iter()
        .find(|t| t.terminal_id == spec.terminal_id);
    if existing
        .as_ref()
        .is_some_and(|t| t.status == TerminalStatus::Revoked)
    {
        return Err(ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "terminal_revoked",
            message: format!(
                "terminal {} was revoked; reinstate it explicitly first",
                spec.terminal_id
            ),
        });
    }
    let row = TerminalRow {
        terminal_id: spec.terminal_id,
        operator_id: spec.operator_id,
        location_id: spec.location_id,
        status: TerminalStatus::Active,
    };
    if !state
        .store
        .upsert_active_terminal(&row, state.clock.now_ms())
        .await?
    {
        return Err(ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "terminal_revoked",
            message: format!("terminal {} was revoked meanwhile", row.terminal_id),
        });
    }
    state.refresh_registry().await?;
    // 201 for a new terminal, 200 for one moved to another station or operator.
    Ok(if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    })
}

/// Lets a revoked terminal connect again (for example after its certificate was replaced).
async fn reinstate_terminal(
    State(state): State<AppState>,
    Path(terminal_id): Path<String>,
) -> ApiResult<StatusCode> {
    if !state
        .store
        .set_terminal_status(&terminal_id, TerminalStatus::Active, state.clock.now_ms())
        .await?
    {
        return Err(ApiError::NotFound(format!("no terminal {terminal_id}")));
    }
    state.refresh_registry().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_terminals(State(state): State<AppState>) -> ApiResult<Json<Vec<TerminalView>>> {
    let rows = state.store.terminals().await?;
    Ok(Json(
        rows.into_iter()
            .map(|t| TerminalView {
                terminal_id: t.terminal_id,
                operator_id: t.operator_id,
                location_id: t.location_id,
                status: t.status,
            })
            .collect(),
    ))
}

async fn revoke_terminal(
    State(state): State<AppState>,
    Path(terminal_id): Path<String>,
) -> ApiResult<StatusCode> {
    if !state
        .store
        .set_terminal_status(&terminal_id, TerminalStatus::Revoked, state.clock.now_ms())
        .await?
    {
        return Err(ApiError::NotFound(format!("no terminal {terminal_id}")));
    }
    state.refresh_registry().await?;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_subject(kind: &str, id: &str) -> ApiResult<(&'static str, i64)> {
    let kind = match kind {
        "credential" => "credential",
        "rider" => "rider",
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_kind",
                "kind must be credential or rider",
            ))
        }
    };
    let id = super::decimal_id("invalid_id", "subject_id", id)?;
    Ok((kind, id))
}

async fn deny_add(
    State(state): State<AppState>,
    ValidJson(spec): ValidJson<DenySpec>,
) -> ApiResult<StatusCode> {
    let (kind, id) = parse_subject(&spec.kind, &spec.subject_id)?;
    super::check_reason("invalid_reason", "reason", &spec.reason)?;
    let added = state
        .store
        .deny_add(kind, id, &spec.reason, state.clock.now_ms())
        .await?;
    state.refresh_registry().await?;
    Ok(if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

async fn deny_remove(
    State(state): State<AppState>,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (kind, id) = parse_subject(&kind, &id)?;
    if !state.store.deny_remove(kind, id).await? {
        return Err(ApiError::NotFound(format!(
            "{kind} {id} is not on the deny list"
        )));
    }
    state.refresh_registry().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deny_list(State(state): State<AppState>) -> ApiResult<Json<Vec<DenyView>>> {
    Ok(Json(
        state
            .store
            .deny_list()
            .await?
            .into_iter()
            .map(|d| DenyView {
                kind: d.subject_kind,
                subject_id: d.subject_id.to_string(),
                reason: d.reason,
                added_at_ms: d.added_at_ms,
            })
            .collect(),
    ))
}

fn key_view(k: crate::store::IssuerKeyRow) -> KeyView {
    KeyView {
        key_id: k.key_id,
        status: k.status,
        public_key: hex::encode(k.public_key),
        activated_at_ms: k.activated_at_ms,
    }
}

async fn list_keys(State(state): State<AppState>) -> ApiResult<Json<Vec<KeyView>>> {
    Ok(Json(
        state
            .store
            .issuer_keys()
            .await?
            .into_iter()
            .map(key_view)
            .collect(),
    ))
}

/// Stages a new issuer key: gates receive it with the key feed and accept it, but it signs
/// nothing until the rotation. Stage, wait until every gate has polled the key feed, then rotate.
async fn stage_key(State(state): State<AppState>) -> ApiResult<(StatusCode, Json<KeyView>)> {
    let rows = state.store.issuer_keys().await?;
    let key = crate::registry::new_issuer_key(crate::registry::next_key_id(&rows))?;
    if !state
        .store
        .stage_issuer_key(&key, state.clock.now_ms())
        .await?
    {
        return Err(ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "key_already_staged",
            message: "a next key is already staged; rotate to promote it".into(),
        });
    }
    state.refresh_registry().await?;
    Ok((StatusCode::CREATED, Json(key_view(key))))
}

/// Promotes the staged key (staging one first if none is): it signs new credentials, the old
/// current key becomes "previous" (still accepted), the old previous key is retired. Refused with
/// 409 `rotation_too_soon` while credentials issued under the key that would be retired can still
/// be valid (less than `credentials.validity_s` since the current key took over), unless forced.
async fn rotate_keys(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<RotateRequest>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    let now = state.clock.now_ms();
    let rows = state.store.issuer_keys().await?;
    let has_previous = rows.iter().any(|k| k.status == KeyStatus::Previous);
    let current_since = rows
        .iter()
        .find(|k| k.status == KeyStatus::Current)
        .and_then(|k| k.activated_at_ms);
    let validity_ms = i64::from(state.config.credentials.validity_s) * 1000;
    if let (true, Some(since), false) = (has_previous, current_since, req.force) {
        if now < since + validity_ms {
            return Err(ApiError::BadRequest {
                status: StatusCode::CONFLICT,
                code: "rotation_too_soon",
                message: format!(
                    "credentials signed by the previous key may be valid until {} ms; rotating now would retire it (pass force: true to do it anyway)",
                    since + validity_ms
                ),
            });
        }
    }
    if !rows.iter().any(|k| k.status == KeyStatus::Next) {
        let key = crate::registry::new_issuer_key(crate::registry::next_key_id(&rows))?;
        state.store.stage_issuer_key(&key, now).await?;
    }
    state.store.rotate_issuer_key(now).await?;
    state.refresh_registry().await?;
    let current = state
        .store
        .issuer_keys()
        .await?
        .into_iter()
        .find(|k| k.status == KeyStatus::Current)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no current key after rotation")))?;
    Ok((StatusCode::CREATED, Json(key_view(current))))
}
