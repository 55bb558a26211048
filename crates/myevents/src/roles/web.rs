//! The web UI alone: no state and no bus, for a deployment that serves the UI from a process of
//! its own behind the same gateway as the services. Every process serves the UI when `web_dir`
//! is set (`serve::web_dir`); this role provides nothing else.

use async_trait::async_trait;
use platform::Config;

use super::{OpenRole, Provides, Role, Shared};
use crate::stores::Tables;

pub(crate) struct Web;

#[async_trait]
impl Role for Web {
    fn name(&self) -> &'static str {
        "web"
    }

    fn has_state(&self) -> bool {
        false
    }

    async fn open(&self, _: &Config, _: Tables) -> anyhow::Result<Box<dyn OpenRole>> {
        Ok(Box::new(Web))
    }
}

#[async_trait]
impl OpenRole for Web {
    async fn start(&self, _: &Shared<'_>) -> anyhow::Result<Provides> {
        Ok(Provides::default())
    }
}
