//! What the OpenAPI document says of errors, for every operation at once: the handlers
//! annotate their own answers, and this adds what the shared layers can answer to any of
//! them (the body extractor, authentication, the rate limit, the database going away), all
//! as `application/problem+json`, so that a generated client knows every answer it can get.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{Content, HeaderBuilder, OpenApi, Ref, RefOr, Type};

const PROBLEM: &str = "application/problem+json";

fn problem(description: &str, retry_after: bool) -> Response {
    let mut r = ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build();
    if retry_after {
        r.headers.insert(
            "Retry-After".into(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(
                        utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer),
                    ))
                    .description(Some("seconds to wait before trying again"))
                    .build(),
            ),
        );
    }
    r
}

/// Adds the shared error answers to every operation of `doc`, and makes every error
/// answer a handler declared `application/problem+json`.
pub fn document_errors(doc: &mut OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let has_path_params = path.contains('{');
        let ops = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (op, writes) in ops {
            if let Some(op) = op.as_mut() {
                document(op, has_path_params, writes);
            }
        }
    }
}

fn document(op: &mut Operation, has_path_params: bool, writes: bool) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let mut shared: Vec<(&str, &str, bool)> = vec![
        ("400", "Malformed JSON or query", false),
        (
            "422",
            "Validation failed: the `errors` name the fields",
            false,
        ),
        ("429", "Too many requests", true),
        ("500", "Internal error (nothing internal is shown)", false),
        (
            "503",
            "Unavailable: the database or a provider cannot be reached",
            true,
        ),
    ];
    if secured {
        shared.push(("401", "Missing, invalid or expired credentials", false));
        shared.push(("403", "The caller may not do this", false));
    }
    if has_path_params {
        shared.push(("404", "Not found (or not the caller's)", false));
    }
    if writes {
        shared.push(("409", "Conflict with the resource's current state", false));
    }
    if has_body {
        shared.push(("413", "The body is too large", false));
    }
    for (status, description, retry_after) in shared {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(problem(description, retry_after)));
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(r)) = (is_error, response)
            && let Some(content) = r.content.shift_remove("application/json")
        {
            r.content.insert(PROBLEM.to_owned(), content);
        }
    }
}
