//! Identity routes: register, login, me, users and API keys.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::domain::{Email, NewPassword, Permission, Principal, Role, Scope, parse_name};
use super::service::{AuthError, NewUser};
use super::store::UserRow;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::middleware::client_ip;
use crate::http::{Json, Path, Validator};
use crate::ids::ApiKeyId;

/// The one place an authentication failure becomes an HTTP answer.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized(why) => ApiError::Unauthorized(why),
            AuthError::RateLimited { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            AuthError::EmailTaken => ApiError::Conflict(e.to_string()),
            AuthError::NotFound => ApiError::NotFound,
            AuthError::Store(e) => e.into(),
            AuthError::Internal(e) => ApiError::Internal(e),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me))
        .routes(routes!(create_user))
        .routes(routes!(create_api_key))
        .routes(routes!(delete_api_key))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1f\x7f-\x9f]+@[^\s.\x00-\x1f\x7f-\x9f][^\s\x00-\x1f\x7f-\x9f]*\.[^\s\x00-\x1f\x7f-\x9f]*[^\s.\x00-\x1f\x7f-\x9f]\s*$"
    )]
    email: String,
    #[schema(min_length = 8, max_length = 512)]
    password: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"^\s*\S[\s\S]*$")]
    name: String,
    #[schema(pattern = r"^(\+?[0-9]{6,19})?$")]
    phone: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1f\x7f-\x9f]+@[^\s.\x00-\x1f\x7f-\x9f][^\s\x00-\x1f\x7f-\x9f]*\.[^\s\x00-\x1f\x7f-\x9f]*[^\s.\x00-\x1f\x7f-\x9f]\s*$"
    )]
    email: String,
    #[schema(min_length = 8, max_length = 512)]
    password: String,
    #[schema(min_length = 1, max_length = 200, pattern = r"^\s*\S[\s\S]*$")]
    name: String,
    role: Role,
    #[schema(pattern = r"^(\+?[0-9]{6,19})?$")]
    phone: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    id: String,
    email: String,
    name: String,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
}

impl From<&UserRow> for UserResponse {
    fn from(u: &UserRow) -> Self {
        UserResponse {
            id: u.id.to_string(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.as_str().into(),
            phone: u.phone.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    user: UserResponse,
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[schema(min_length = 1, max_length = 200, pattern = r"^\s*\S[\s\S]*$")]
    name: String,
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    id: String,
    name: String,
    scopes: Vec<Scope>,
    /// Shown only in this answer.
    key: String,
}
/// Who the caller is: a user, or an integration's API key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MeResponse {
    User(UserResponse),
    ApiKey {
        id: String,
        role: &'static str,
        scopes: Vec<Scope>,
    },
}

fn parse_phone(v: &mut Validator, phone: Option<String>) -> Option<String> {
    let phone = phone
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())?;
    let ok = phone.len() <= 20
        && phone
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || (i == 0 && c == '+'))
        && phone.chars().filter(char::is_ascii_digit).count() >= 6;
    if !ok {
        v.push("phone", "must be a phone number such as +15551234567");
    }
    Some(phone)
}

fn parse_new_user(
    email: &str,
    password: String,
    name: &str,
    phone: Option<String>,
    role: Role,
) -> ApiResult<NewUser> {
    let mut v = Validator::default();
    let email = v.check(Email::parse("email", email));
    let password = v.check(NewPassword::parse("password", password));
    let name = v.check(parse_name("name", name));
    let phone = parse_phone(&mut v, phone);
    v.finish()?;
    match (email, password, name) {
        (Some(email), Some(password), Some(name)) => Ok(NewUser {
            email,
            password,
            name,
            phone,
            role,
        }),
        _ => Err(ApiError::internal(anyhow::anyhow!(
            "validator passed with missing fields"
        ))),
    }
}

fn token_response(state: &AppState, user: &UserRow) -> ApiResult<TokenResponse> {
    let t = state.auth.issue_token(user)?;
    Ok(TokenResponse {
        user: user.into(),
        access_token: t.access_token,
        token_type: "Bearer",
        expires_in: t.expires_in,
    })
}

/// Create a customer account and sign it in.
#[utoipa::path(post, path = "/v1/auth/register", tag = "identity", request_body = RegisterRequest,
    responses((status = 201, body = TokenResponse), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn register(
    State(state): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let new = parse_new_user(
        &req.email,
        req.password,
        &req.name,
        req.phone,
        Role::Customer,
    )?;
    let user = state.auth.create_user(new, None).await?;
    Ok((StatusCode::CREATED, Json(token_response(&state, &user)?)))
}

/// Sign in. Failed attempts are limited per e-mail and per client address.
#[utoipa::path(post, path = "/v1/auth/login", tag = "identity", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let ip = client_ip(&headers, Some(peer), state.config.trust_proxy_headers);
    let user = state.auth.login(&req.email, &req.password, &ip).await?;
    Ok(Json(token_response(&state, &user)?))
}

/// The caller.
#[utoipa::path(get, path = "/v1/me", tag = "identity", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, caller: Principal) -> ApiResult<Json<MeResponse>> {
    match caller {
        Principal::User { id, .. } => {
            let user = state
                .auth
                .user(id)
                .await
                .map_err(|_| ApiError::Unauthorized("the account no longer exists"))?;
            Ok(Json(MeResponse::User((&user).into())))
        }
        Principal::ApiKey { id, scopes } => Ok(Json(MeResponse::ApiKey {
            id: id.to_string(),
            role: "integration",
            scopes,
        })),
        // Never reaches here: the middleware admits a link on its order's routes only.
        Principal::TrackingLink { .. } => Err(ApiError::Unauthorized(
            "a tracking link reads its order only",
        )),
    }
}

/// Create a user of any role (admin).
#[utoipa::path(post, path = "/v1/users", tag = "identity", security(("bearer" = [])), request_body = CreateUserRequest,
    responses((status = 201, body = UserResponse), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Principal,
    Json(req): Json<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserResponse>)> {
    caller.require(Permission::Administer)?;
    let new = parse_new_user(&req.email, req.password, &req.name, req.phone, req.role)?;
    let user = state.auth.create_user(new, Some(&caller.key())).await?;
    Ok((StatusCode::CREATED, Json((&user).into())))
}

/// Create an API key for an integration (admin). The key is shown only in this answer.
#[utoipa::path(post, path = "/v1/api-keys", tag = "identity", security(("bearer" = [])), request_body = CreateApiKeyRequest,
    responses((status = 201, body = ApiKeyResponse), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_api_key(
    State(state): State<AppState>,
    caller: Principal,
    Json(req): Json<CreateApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<ApiKeyResponse>)> {
    caller.require(Permission::Administer)?;
    let mut v = Validator::default();
    let name = v.check(parse_name("name", &req.name));
    if req.scopes.is_empty() {
        v.push("scopes", "must name at least one scope");
    }
    v.finish()?;
    let name = name.unwrap_or_default();
    let (row, key) = state
        .auth
        .create_api_key(name, req.scopes, caller.user_id(), &caller.key())
        .await?;
    let scopes = row
        .scopes
        .split_whitespace()
        .filter_map(Scope::parse)
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyResponse {
            id: row.id.to_string(),
            name: row.name,
            scopes,
            key,
        }),
    ))
}

/// Revoke an API key (admin); it stops working at once.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "identity", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn delete_api_key(
    State(state): State<AppState>,
    caller: Principal,
    Path(id): Path<ApiKeyId>,
) -> ApiResult<StatusCode> {
    caller.require(Permission::Administer)?;
    state.auth.revoke_api_key(id.uuid(), &caller.key()).await?;
    Ok(StatusCode::NO_CONTENT)
}
