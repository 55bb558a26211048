//! What every MyEvents service shares: configuration, the HTTP server and its middleware, the
//! JSON error type, bearer-token auth, Prometheus metrics and the OpenAPI document.

pub mod admission;
pub mod auth;
pub mod config;
pub mod email;
pub mod error;
pub mod hardening;
pub mod hs256;
pub mod http;
pub mod id;
pub mod json;
pub mod links;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod telemetry;
pub mod tls;
pub mod url;

pub use auth::{Admin, Auth, Claims, CurrentUser, MaybeUser, Role};
pub use config::Config;
pub use email::Email;
pub use error::{ApiError, StoreError, UnknownValue};
pub use id::{BookingId, EventId, LocationId, UserId};
pub use json::ApiJson;
pub use links::LinkSigner;
