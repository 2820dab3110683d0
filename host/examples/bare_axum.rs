//! The baseline of the HTTP load benchmark: a bare axum handler answering
//! `GET /event/{programId}` with a fixed tracking JSON, no cache, plugins or stream.
//!
//! `cargo run --release -p adtrack-host --example bare_axum -- 127.0.0.1:8099`

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use serde_json::{Value, json};

async fn track(Path(program_id): Path<String>) -> Json<Value> {
    Json(json!({
        "userAgent": "wrk",
        "programId": program_id,
        "programName": "Summer Video Preroll",
        "checksum": "b84e02d7",
        "customerId": 4712,
        "customerName": "Globex Travel",
        "messageId": uuid::Uuid::new_v4().to_string(),
        "valid": true,
    }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    axum::serve(
        listener,
        Router::new().route("/event/{program_id}", get(track)),
    )
    .await
}
