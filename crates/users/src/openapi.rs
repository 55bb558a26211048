use platform::openapi::{Op, operation};
use serde_json::{Value, json};

/// The `paths` of this service's OpenAPI document.
pub fn paths() -> Value {
    json!({
        "/users": {
            "post": operation(Op { summary: "Register a customer account", path_params: &[], query_params: &[],
                body: Some(json!({"Email": "ann@example.com", "Password": "at least 8 characters", "Name": "Ann"})), auth: false,
                responses: &[(201, "the user"), (400, "malformed JSON"), (409, "e-mail taken"), (422, "invalid values")] }),
        },
        "/auth/login": {
            "post": operation(Op { summary: "Sign in: returns Token (a JWT for `Authorization: Bearer`) and ExpiresAt",
                path_params: &[], query_params: &[],
                body: Some(json!({"Email": "ann@example.com", "Password": "…"})), auth: false,
                responses: &[(200, "the token"), (400, "malformed JSON"), (401, "wrong e-mail or password"),
                             (422, "missing fields"), (429, "too many failed attempts; see Retry-After")] }),
        },
        "/users/me": {
            "get": operation(Op { summary: "The signed-in user", path_params: &[], query_params: &[], body: None, auth: true,
                responses: &[(200, "the user"), (401, "not signed in")] }),
        },
    })
}
