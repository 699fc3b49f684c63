//! HTTP plumbing shared by every module: our own JSON and query extractors (whose
//! rejections are `ApiError`s), the caller extractor, cursor paging and the middleware that
//! authenticates, limits, counts and logs requests.

pub mod middleware;
pub mod openapi;

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use base64::Engine;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::domain::Principal;
use crate::error::{ApiError, FieldError};

/// Largest accepted request body.
pub const MAX_BODY: usize = 1024 * 1024;

/// A JSON body. Invalid JSON is 400 `invalid_json`; a wrong type or a missing field is 422
/// `validation_failed` naming the field; a body over 1 MiB is 413.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidJson("the body could not be read".into())
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::InvalidJson(
            "the body is empty; a JSON object was expected".into(),
        ));
    }
    // Syntax first, so that a broken document is 400 and a well-formed but wrong one 422.
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(format!("{e}")))?;
    whole_numbers_as_integers(&mut value);
    if let Some(field) = nul_in(&value, String::new()) {
        return Err(ApiError::Validation(vec![FieldError::new(
            field,
            "must not contain NUL characters",
        )]));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name,
            (".", None) => "body".to_owned(),
            (_, Some(name)) => format!("{path}.{name}"),
            (_, None) => path,
        };
        ApiError::Validation(vec![FieldError::new(field, message)])
    })
}

/// The first field whose text (or a key of it) holds a NUL character: no text column of
/// PostgreSQL can store one, so such a request is refused whole, on both backends alike.
fn nul_in(v: &serde_json::Value, path: String) -> Option<String> {
    let name = |p: &str| {
        if p.is_empty() {
            "body".to_owned()
        } else {
            p.to_owned()
        }
    };
    match v {
        serde_json::Value::String(s) if s.contains('\0') => Some(name(&path)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_in(item, format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(k, item)| {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(name(&path))
            } else {
                nul_in(item, at)
            }
        }),
        _ => None,
    }
}

/// JSON Schema (and so OpenAPI) counts `3.0` as an integer; serde does not. A number with
/// no fraction becomes an integer before the body is read into its type, so that a client
/// that writes integers as floats is understood.
fn whole_numbers_as_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                // Exact: a whole f64 below 2^53 converts to i64 without loss.
                let i = f as i64;
                *v = serde_json::Value::from(i);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(whole_numbers_as_integers);
        }
        _ => {}
    }
}

impl<T: Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters, repeatable (`?status=a&status=b`).
#[derive(Debug, Default)]
pub struct QueryParams(HashMap<String, Vec<String>>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(q) = parts.uri.query() {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                // No text column can hold a NUL (PostgreSQL refuses it): never pass one on.
                if k.contains('\0') || v.contains('\0') {
                    return Err(ApiError::validation(
                        k.replace('\0', ""),
                        "must not contain NUL characters",
                    ));
                }
                map.entry(k.into_owned()).or_default().push(v.into_owned());
            }
        }
        Ok(QueryParams(map))
    }
}

impl QueryParams {
    /// The single value of `name`; empty values count as absent.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .get(name)
            .map(|v| {
                v.iter()
                    .map(String::as_str)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of a single-valued, typed parameter (a number, a date, a flag), as the
    /// OpenAPI document describes it: given twice is an error, and an empty value is a
    /// value (which then fails to parse), not an absent one.
    pub fn value(&self, name: &str) -> Result<Option<&str>, FieldError> {
        match self.0.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one.as_str())),
            Some(_) => Err(FieldError::new(name, "must be given once")),
        }
    }

    pub fn parse<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, FieldError> {
        self.value(name)?
            .map(|s| {
                s.parse::<T>()
                    .map_err(|_| FieldError::new(name, format!("must be {what}")))
            })
            .transpose()
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, FieldError> {
        self.parse(name, "true or false")
    }

    /// `?limit=` in 1..=200, default 50.
    pub fn limit(&self) -> Result<u32, FieldError> {
        match self.parse::<u32>("limit", "a whole number from 1 to 200")? {
            None => Ok(50),
            Some(n @ 1..=200) => Ok(n),
            Some(_) => Err(FieldError::new(
                "limit",
                "must be a whole number from 1 to 200",
            )),
        }
    }
}

/// The caller of a request, as resolved by the authentication middleware.
#[derive(Clone, Debug)]
pub enum Caller {
    Anonymous,
    Authenticated(Principal),
    Invalid(&'static str),
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Caller>() {
            Some(Caller::Authenticated(p)) => Ok(p.clone()),
            Some(Caller::Invalid(why)) => Err(ApiError::Unauthorized(why)),
            _ => Err(ApiError::Unauthorized("a bearer token is required")),
        }
    }
}

/// A list answer: `{"data":[…], "next_cursor": "…" | null}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Opaque keyset cursors: base64url of a small JSON document.
pub fn encode_cursor<T: Serialize>(c: &T) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

pub fn decode_cursor<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, FieldError> {
    let bad = || FieldError::new("cursor", "is not a cursor this server issued");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// Typed path parameters: `Path<OrderId>`, `Path<(UserRef, ItemId)>` (see `crate::ids`).
/// A segment that does not parse names a resource that does not exist: 404, as
/// problem+json, like an id that parses but is unknown.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::NotFound),
            // A route whose pattern lacks the parameters its handler takes.
            Err(e) => Err(ApiError::internal(anyhow::anyhow!("path parameters: {e}"))),
        }
    }
}

/// Collects field errors; `finish` fails with all of them at once.
#[derive(Default)]
pub struct Validator(Vec<FieldError>);

impl Validator {
    pub fn check<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}
