//! The rider API: register, enrol a device and receive a credential, list own journeys, see
//! whether (and why) gates refuse the rider's codes, and today's progress towards daily caps.
//! A rider token identifies exactly one rider; every query is scoped by the rider id the token
//! resolves to, so no request can name another rider's data.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use turnpike_wire::ridecode::{self, CredentialRequest, ProductFlags};
use turnpike_wire::{Currency, Money};

use super::{bearer, sha256, OptionalJson, ValidJson, ValidQuery};
use crate::error::{ApiError, ApiResult};
use crate::store::{CredentialRow, JourneyRow};
use crate::AppState;
pub use turnpike_wire::api::admin::DenyView;
pub use turnpike_wire::api::rider::{
    DailyCapView, DailyCaps, EnrolRequest, Enrolled, JourneyList, JourneyView, OwnDenyList,
    RegisterRequest, Registered,
};

const RIDER_BODY_BYTES_MAX: usize = 4 * 1024;
/// Most journeys one listing returns.
const JOURNEYS_LIMIT_MAX: i64 = 500;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/riders", post(register))
        .route("/v1/riders/me/credentials", post(enrol))
        .route("/v1/riders/me/journeys", get(journeys))
        .route("/v1/riders/me/deny-list", get(own_deny_list))
        .route("/v1/riders/me/daily-caps", get(daily_caps))
        .layer(DefaultBodyLimit::max(RIDER_BODY_BYTES_MAX))
        .with_state(state)
}

/// Registers a rider. The body is read and checked (within `RIDER_BODY_BYTES_MAX`) and the
/// source address's registration budget spent before anything is written.
async fn register(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    axum::Extension(address): axum::Extension<super::ClientAddress>,
    OptionalJson(_request): OptionalJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    let from = super::client_address(
        &headers,
        address,
        &state.config.limits.client_address_header,
    );
    state.limits.registration(from)?;
    let rider_id = crate::random_id();
    let token = format!(
        "rt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::random_bytes::<32>())
    );
    state
        .store
        .insert_rider(rider_id, &sha256(token.as_bytes()), state.clock.now_ms())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            rider_id: rider_id.to_string(),
            token,
        }),
    ))
}

/// The rider a bearer token belongs to. As an extractor it runs before the body is read, so an
/// unauthenticated request learns nothing about body validation.
pub struct Rider(pub i64);

impl axum::extract::FromRequestParts<AppState> for Rider {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let rider = state
            .store
            .rider_by_token(&sha256(token.as_bytes()))
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state.limits.rider(rider)?;
        Ok(Rider(rider))
    }
}

async fn enrol(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
    ValidJson(req): ValidJson<EnrolRequest>,
) -> ApiResult<(StatusCode, Json<Enrolled>)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(req.device_public_key.trim_end_matches('='))
        .map_err(|_| {
            ApiError::unprocessable(
                "invalid_device_public_key",
                "device_public_key is not base64url",
            )
        })?;
    let compressed = match raw.len() {
        33 => ridecode::decompress_public_key(&raw.clone().try_into().expect("length checked"))
            .map(|_| {
                let mut k = [0u8; 33];
                k.copy_from_slice(&raw);
                k
            }),
        65 => ridecode::compress_public_key(&raw),
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_device_public_key",
                "a P-256 public key has 33 or 65 bytes",
            ))
        }
    }
    .map_err(|_| ApiError::unprocessable("invalid_device_public_key", "not a point on P-256"))?;
    let mut products = 0u16;
    for p in req
        .products
        .unwrap_or_else(|| vec!["metro".into(), "toll".into()])
    {
        products |= match p.as_str() {
            "metro" => ProductFlags::METRO.bits(),
            "toll" => ProductFlags::TOLL.bits(),
            other => {
                return Err(ApiError::unprocessable(
                    "unknown_product",
                    format!("unknown product {other:?}"),
                ))
            }
        };
    }
    if products == 0 {
        return Err(ApiError::unprocessable(
            "unknown_product",
            "products must name at least one of \"metro\", \"toll\"",
        ));
    }
    let now_s = (state.clock.now_ms() / 1000) as u32;
    let keys = state.registry.keys();
    let body = CredentialRequest {
        credential_id: crate::random_id() as u64,
        rider_id: rider_id as u64,
        // A minute of slack so a gate whose clock runs slightly behind accepts a fresh credential.
        valid_from_s: now_s.saturating_sub(60),
        valid_until_s: now_s.saturating_sub(60) + state.config.credentials.validity_s,
        products: ProductFlags::from_bits(products)
            .ok_or_else(|| ApiError::unprocessable("unknown_product", "bad products"))?,
        device_public_key: compressed,
    };
    let credential = keys
        .current
        .issue(&body)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("issuing: {e}")))?;
    state
        .store
        .insert_credential(&CredentialRow {
            credential_id: body.credential_id as i64,
            rider_id,
            device_public_key: compressed.to_vec(),
            issuer_key_id: i64::from(keys.current.key_id()),
            products: i64::from(products),
            valid_from_s: i64::from(body.valid_from_s),
            valid_until_s: i64::from(body.valid_until_s),
            issued_at_ms: state.clock.now_ms(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            credential_id: body.credential_id.to_string(),
            credential: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(credential.to_bytes()),
            issuer_key_id: keys.current.key_id(),
            valid_from_s: body.valid_from_s,
            valid_until_s: body.valid_until_s,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JourneyQuery {
    #[serde(default)]
    limit: Option<i64>,
}

pub fn journey_view(j: JourneyRow) -> JourneyView {
    let currency = j.currency.as_deref().and_then(|c| Currency::parse(c).ok());
    let money = |minor: Option<i64>| Some(Money::from_minor(minor?, currency?));
    JourneyView {
        journey_id: j.journey_id.to_string(),
        fare: money(j.fare_minor),
        charge: money(j.charge_minor),
        operator_id: j.operator_id,
        mode: j.mode,
        status: j.status,
        entry_location_id: j.entry_location_id,
        entry_at_ms: j.entry_at_ms,
        exit_location_id: j.exit_location_id,
        exit_at_ms: j.exit_at_ms,
        vehicle_class: j.vehicle_class,
        close_reason: j.close_reason,
        business_day: j.business_day,
    }
}

async fn journeys(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
    ValidQuery(q): ValidQuery<JourneyQuery>,
) -> ApiResult<Json<JourneyList>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=JOURNEYS_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::unprocessable(
            "limit_out_of_range",
            format!("limit must be 1..={JOURNEYS_LIMIT_MAX}"),
        ));
    }
    let rows = state.store.journeys_of_rider(rider_id, limit).await?;
    Ok(Json(JourneyList {
        journeys: rows.into_iter().map(journey_view).collect(),
    }))
}

/// The deny-list entries that make gates refuse this rider's codes (the rider, or one of their
/// devices), with the reason each was added for; none when the codes are accepted.
async fn own_deny_list(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<OwnDenyList>> {
    let entries: Vec<DenyView> = state
        .store
        .deny_entries_of_rider(rider_id)
        .await?
        .into_iter()
        .map(|d| DenyView {
            kind: d.subject_kind,
            subject_id: d.subject_id.to_string(),
            reason: d.reason,
            added_at_ms: d.added_at_ms,
        })
        .collect();
    Ok(Json(OwnDenyList {
        denied: !entries.is_empty(),
        entries,
    }))
}

/// For each operator with a daily cap: the rider's fares of that operator's business day now
/// (in its time zone), what they are charged under the cap, and what is left before it.
async fn daily_caps(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<DailyCaps>> {
    let now_ms = state.clock.now_ms();
    let mut caps = Vec::new();
    for network in state.networks.all() {
        let Some(cap) = network.daily_cap() else {
            continue;
        };
        let business_day = network.business_day(now_ms);
        let fares_minor = state
            .store
            .rider_day_fares_minor(rider_id, network.operator_id(), &business_day)
            .await?;
        let charged_minor = fares_minor.min(cap.to_minor());
        let money = |minor| Money::from_minor(minor, cap.currency());
        caps.push(DailyCapView {
            operator_id: network.operator_id().to_string(),
            business_day,
            cap,
            fares_total: money(fares_minor),
            charged: money(charged_minor),
            remaining: money(cap.to_minor() - charged_minor),
        });
    }
    Ok(Json(DailyCaps { caps }))
}
