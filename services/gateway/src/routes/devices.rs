//! `/me/devices`: the caller's push devices. The app registers its push registration token here
//! so that a checkout's outcome can be pushed to it.
//!
//! A token identifies one app install, so it belongs to one user at a time: registering it from
//! another user moves it there (the latest sign-in on the device wins), and a user's delete
//! never touches another user's registration. A user keeps at most `ICON_MAX_DEVICES_PER_USER`
//! devices; registering one more drops the least recently registered. Tokens are credentials:
//! they are logged only redacted ([`DeviceToken::redacted`]).

use super::{State, Validation};
use crate::auth::User;
use crate::extract::Json;
use crate::problem::{lost_write, ApiError, WriteOutcome};
use actix_web::{http::header, web, HttpResponse};
use chrono::{DateTime, Utc};
use icon_domain::{DeviceToken, Platform};
use icon_store::devices::{self, Device};
use icon_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `PUT /me/devices/{token}`. Unknown fields are refused (400 `unknown_field`), so a
/// typo such as `platfrom` does not pass silently.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"platform": "android"}))]
pub struct DeviceRequest {
    /// Decides the platform-specific part of a push. Exactly `android`, `ios` or `web`; any
    /// other value is a 422 naming `platform`.
    #[schema(value_type = Platform, example = "android")]
    pub platform: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "token": "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx",
    "platform": "android",
    "created_at": "2026-11-27T10:00:00Z",
    "updated_at": "2026-11-28T08:30:00Z"
}))]
pub struct DeviceBody {
    /// The registration token, as registered.
    pub token: String,
    pub platform: Platform,
    /// When this user registered the token (again from now if it moved from another user).
    pub created_at: DateTime<Utc>,
    /// When it was last registered: the most recently registered devices are kept.
    pub updated_at: DateTime<Utc>,
}

impl From<Device> for DeviceBody {
    fn from(d: Device) -> Self {
        Self {
            token: d.token.as_str().to_owned(),
            platform: d.platform,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DeviceList {
    /// Most recently registered first.
    pub devices: Vec<DeviceBody>,
}

/// Register a device for push.
///
/// Registers the token for the caller: 201 if it was not theirs before (new, or moved from
/// another user, who no longer has it), 200 if they had it (its platform is updated and it
/// counts as registered now). Registering is idempotent. Beyond `ICON_MAX_DEVICES_PER_USER`
/// devices (default 10), the least recently registered are dropped. Checkouts submitted with
/// `push_notification: true` push their outcome to every device registered at submission.
#[utoipa::path(
    put, path = "/me/devices/{token}", tag = "devices",
    params(("token" = String, Path,
        description = "The device's push registration token: 1 to 4,096 letters, digits, `-`, `_`, `:` or `.`",
        example = "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx")),
    request_body(content = DeviceRequest, example = json!({"platform": "android"})),
    responses(
        (status = 201, description = "Registered for the caller (new to them)", body = DeviceBody,
            headers(("Location" = String, description = "`/me/devices/{token}`"))),
        (status = 200, description = "Already the caller's: platform and registration time updated", body = DeviceBody),
        (status = 400, description = "`malformed_json`: not JSON, or `platform` missing or not a string; `unknown_field`: a field other than `platform` (named in `field`); `json_too_deep`: nested more than 32 levels", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: a bad token or platform; `errors` names each (`token`, `platform`)",
            body = crate::problem::Problem, content_type = "application/problem+json",
            example = json!({
                "type": "/docs#problem-validation_failed",
                "title": "The request cannot be processed",
                "status": 422,
                "detail": "token: may hold only letters, digits and `-`, `_`, `:`, `.`; platform: must be one of `android`, `ios`, `web`",
                "code": "validation_failed",
                "errors": [
                    {"field": "token", "message": "may hold only letters, digits and `-`, `_`, `:`, `.`"},
                    {"field": "platform", "message": "must be one of `android`, `ios`, `web`"}
                ]
            })),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "PUT /me/devices/{token}", skip_all, fields(user = %user.id))]
pub async fn put_device(
    user: User,
    state: State,
    path: web::Path<String>,
    body: Json<DeviceRequest>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let token = v.check("token", DeviceToken::parse(path.into_inner()));
    let platform = v.check("platform", Platform::parse(&body.platform));
    v.finish()?;
    let (Some(token), Some(platform)) = (token, platform) else {
        return Err(ApiError::internal("validated device fields missing"));
    };
    let mut db = state.pool.get().await.map_err(StoreError::from)?;
    let registered = devices::register(
        &mut db,
        &user.id,
        &token,
        platform,
        state.max_devices_per_user,
    )
    .await
    .or_outcome_unknown(lost_write::DEVICE)?;
    tracing::info!(
        device = %token.redacted(),
        %platform,
        created = registered.created,
        "device registered"
    );
    if registered.dropped > 0 {
        tracing::info!(
            dropped = registered.dropped,
            limit = state.max_devices_per_user,
            "dropped the user's least recently registered devices (ICON_MAX_DEVICES_PER_USER)"
        );
    }
    let body = DeviceBody::from(registered.device);
    Ok(if registered.created {
        HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/me/devices/{token}")))
            .json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// Unregister a device.
///
/// Idempotent: 204 whether or not the caller had the token registered. Another user's
/// registration of the same token is left alone. Pushes already queued for checkouts submitted
/// earlier are not sent to a device unregistered since.
#[utoipa::path(
    delete, path = "/me/devices/{token}", tag = "devices",
    params(("token" = String, Path,
        description = "The device's push registration token",
        example = "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx")),
    responses(
        (status = 204, description = "The caller no longer has this device registered"),
        (status = 422, description = "`validation_failed`: not a well-formed token (`errors` names `token`); no such token can be registered",
            body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "DELETE /me/devices/{token}", skip_all, fields(user = %user.id))]
pub async fn delete_device(
    user: User,
    state: State,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mut v = Validation::default();
    let token = v.check("token", DeviceToken::parse(path.into_inner()));
    v.finish()?;
    let Some(token) = token else {
        return Err(ApiError::internal("validated device token missing"));
    };
    let db = state.pool.get().await.map_err(StoreError::from)?;
    let removed = devices::remove(&db, &user.id, &token)
        .await
        .or_outcome_unknown(lost_write::DEVICE_REMOVAL)?;
    tracing::info!(device = %token.redacted(), removed, "device unregistered");
    Ok(HttpResponse::NoContent().finish())
}

/// List the caller's devices.
///
/// The push devices registered for the caller, most recently registered first: those a
/// checkout submitted now with `push_notification: true` would push to.
#[utoipa::path(
    get, path = "/me/devices", tag = "devices",
    responses(
        (status = 200, description = "The caller's devices, most recently registered first", body = DeviceList,
            example = json!({"devices": [{
                "token": "fcm-token:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx",
                "platform": "android",
                "created_at": "2026-11-27T10:00:00Z",
                "updated_at": "2026-11-28T08:30:00Z"
            }]})),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "GET /me/devices", skip_all, fields(user = %user.id))]
pub async fn list_devices(user: User, state: State) -> Result<HttpResponse, ApiError> {
    let db = state.pool.get().await.map_err(StoreError::from)?;
    let list = devices::list(&db, &user.id).await?;
    Ok(HttpResponse::Ok().json(DeviceList {
        devices: list.into_iter().map(DeviceBody::from).collect(),
    }))
}
