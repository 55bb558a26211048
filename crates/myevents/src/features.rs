//! The backends a binary may be built without. Each broker and each database server is a cargo
//! feature of this crate (Cargo.toml: `postgres`, `mongodb`, `dynamodb`, `rabbitmq`, `kafka`,
//! `sqs`, or `full` for all), so that `scripts/start` compiles only the embedded defaults. A
//! configuration that names a missing backend stops the start with an error naming the feature.

/// `Ok($built)` when this binary has the cargo feature `$feature`; otherwise the error that says
/// which feature `$what` (the setting, e.g. "broker.url") needs.
macro_rules! with_feature {
    ($feature:literal, $what:expr, $built:expr) => {{
        #[cfg(feature = $feature)]
        let answer = Ok($built);
        #[cfg(not(feature = $feature))]
        let answer = Err($crate::features::not_built($what, $feature));
        answer
    }};
}
pub(crate) use with_feature;

#[allow(dead_code)] // unused in a build that has every feature
pub(crate) fn not_built(what: impl std::fmt::Display, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} names a backend this binary was built without: rebuild it with the `{feature}` \
         feature (`cargo build --release -p myevents --features {feature}`, or `--features full` \
         for every backend)"
    )
}
