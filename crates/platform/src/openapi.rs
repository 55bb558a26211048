//! The OpenAPI 3 document at `/openapi.json`: each service describes its own paths, and the
//! process serves the union of the services it runs.

use serde_json::{Map, Value, json};

/// One operation, described compactly; [`operation`] turns it into OpenAPI.
pub struct Op<'a> {
    pub summary: &'a str,
    /// `(name, description)` of path parameters.
    pub path_params: &'a [(&'a str, &'a str)],
    pub query_params: &'a [(&'a str, &'a str)],
    /// Example request body, if the operation takes one.
    pub body: Option<Value>,
    pub auth: bool,
    /// `(status, description)`.
    pub responses: &'a [(u16, &'a str)],
}

pub fn operation(op: Op<'_>) -> Value {
    let mut o = Map::new();
    o.insert("summary".into(), json!(op.summary));
    let mut params: Vec<Value> = op
        .path_params
        .iter()
        .map(|(n, d)| json!({"name": n, "in": "path", "required": true, "description": d, "schema": {"type": "string"}}))
        .collect();
    params.extend(op.query_params.iter().map(
        |(n, d)| json!({"name": n, "in": "query", "required": false, "description": d, "schema": {"type": "string"}}),
    ));
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    if let Some(example) = op.body {
        o.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}, "example": example}}}),
        );
    }
    if op.auth {
        o.insert("security".into(), json!([{"bearer": []}]));
    }
    let responses: Map<String, Value> = op
        .responses
        .iter()
        .map(|(status, d)| {
            let schema = if *status >= 400 {
                json!({"$ref": "#/components/schemas/Error"})
            } else {
                json!({})
            };
            (
                status.to_string(),
                json!({"description": d, "content": {"application/json": {"schema": schema}}}),
            )
        })
        .collect();
    o.insert("responses".into(), Value::Object(responses));
    Value::Object(o)
}

/// The whole document from each service's `paths` object.
pub fn document(parts: &[Value]) -> Value {
    let mut paths = Map::new();
    for part in parts {
        if let Value::Object(map) = part {
            for (path, ops) in map {
                let entry = paths.entry(path.clone()).or_insert_with(|| json!({}));
                if let (Value::Object(into), Value::Object(ops)) = (entry, ops) {
                    into.extend(ops.clone());
                }
            }
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "MyEvents", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Event ticketing: locations, events, bookings and users."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                   "properties": {"error": {"type": "string"}}}}
        }
    })
}
