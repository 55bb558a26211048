//! The gRPC `Notificator` of the reference (`SendEmail(email, content) → id`), beside the
//! standard gRPC health service.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::domain::Mail;
use crate::store::{NotificationStore, StoreError};

/// The code generated from `proto/notificator.proto`.
pub mod proto {
    tonic::include_proto!("notificator");
}

use proto::notificator_server::{Notificator, NotificatorServer};
use proto::{SendEmailReply, SendEmailRequest};

/// Longest `content` accepted: a message, not an attachment.
const MAX_CONTENT: usize = 64 * 1024;

pub struct NotificatorService {
    store: Arc<dyn NotificationStore>,
}

#[tonic::async_trait]
impl Notificator for NotificatorService {
    /// Queues the mail and answers its id; the sender delivers it like every other mail.
    async fn send_email(
        &self,
        request: Request<SendEmailRequest>,
    ) -> Result<Response<SendEmailReply>, Status> {
        let request = request.into_inner();
        let email = platform::Email::parse(&request.email).map_err(Status::invalid_argument)?;
        if request.content.trim().is_empty() {
            return Err(Status::invalid_argument("content is empty"));
        }
        if request.content.len() > MAX_CONTENT {
            return Err(Status::invalid_argument(format!(
                "content is longer than {MAX_CONTENT} bytes"
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mail = Mail::direct(id.clone(), email.into_string(), &request.content);
        self.store.queue(mail).await.map_err(store_status)?;
        Ok(Response::new(SendEmailReply { id }))
    }
}

/// A store error as a gRPC status: its kind, and the detail in this process's log only, as for
/// the HTTP API.
fn store_status(error: StoreError) -> Status {
    match &error {
        StoreError::Internal(_) => tracing::error!(%error, "SendEmail failed"),
        _ => tracing::warn!(%error, "SendEmail failed"),
    }
    let message = error.for_client();
    match error {
        StoreError::Unavailable(_) => Status::unavailable(message),
        StoreError::Conflict(_) => Status::already_exists(message),
        StoreError::Invalid(_) => Status::invalid_argument(message),
        StoreError::Internal(_) => Status::internal(message),
    }
}

/// Serves the Notificator and gRPC health on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn NotificationStore>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<NotificatorServer<NotificatorService>>()
        .await;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(NotificatorServer::new(NotificatorService { store }))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
}
