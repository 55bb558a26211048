//! Request bodies as the reference's clients send them: JSON with or without a `Content-Type`,
//! keys in PascalCase (`StartDate`) or lower-case (`startdate`), and whole numbers written
//! either way (`2` or `2.0`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ApiError;

/// A JSON body whose object keys were lower-cased before decoding, so request types declare
/// lower-case field names and accept `Name`, `name` and `NAME` alike.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the request needs a JSON body".to_owned(),
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".to_owned(),
        ));
    }
    serde_json::from_value(normalised(value))
        .map_err(|e| ApiError::BadRequest(format!("the body does not fit: {e}")))
}

/// Keys lower-cased; whole floats (`2.0`) as integers, since JSON Schema, and so the OpenAPI
/// document, counts them as integers, and the request types decode integers.
fn normalised(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.to_lowercase(), normalised(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalised).collect()),
        Value::Number(n) => match n.as_f64() {
            // The range excludes 2^63, which `i64::MAX as f64` rounds up to.
            Some(f)
                if n.is_f64()
                    && f.fract() == 0.0
                    && (i64::MIN as f64..i64::MAX as f64).contains(&f) =>
            {
                Value::from(f as i64)
            }
            _ => Value::Number(n),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Input {
        name: String,
        startdate: i64,
        halls: Vec<Hall>,
    }
    #[derive(serde::Deserialize, Debug)]
    struct Hall {
        capacity: u32,
    }

    #[test]
    fn pascal_and_lower_case_keys_both_decode() {
        let a: Input = parse(br#"{"Name":"x","StartDate":5,"Halls":[{"capacity":3}]}"#).unwrap();
        let b: Input = parse(br#"{"name":"x","startdate":5,"halls":[{"Capacity":3}]}"#).unwrap();
        assert_eq!(
            (a.name, a.startdate, a.halls[0].capacity),
            ("x".into(), 5, 3)
        );
        assert_eq!(b.halls[0].capacity, 3);
    }

    #[test]
    fn whole_floats_decode_as_integers_and_others_do_not() {
        let a: Input =
            parse(br#"{"name":"x","startdate":5.0,"halls":[{"capacity":3e0}]}"#).unwrap();
        assert_eq!((a.startdate, a.halls[0].capacity), (5, 3));
        for body in [
            &br#"{"name":"x","startdate":5.5,"halls":[]}"#[..],
            br#"{"name":"x","startdate":1e19,"halls":[]}"#,
        ] {
            let err = parse::<Input>(body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_400_with_a_reason() {
        for body in [&b""[..], b"{", b"[1]", br#"{"name":1}"#] {
            let err = parse::<Input>(body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body:?}");
        }
    }
}
