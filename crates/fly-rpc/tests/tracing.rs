//! One trace across regions: a trace context in scope reaches the serving
//! node (no OpenTelemetry tracer; see tracing_otel.rs for one).

mod common;
mod trace_probe;

use fly_rpc::{TraceParent, with_trace_context};
use trace_probe::{WhichTrace, two_nodes};

#[tokio::test]
async fn a_trace_context_in_scope_is_forwarded_and_seen_by_the_handler() {
    let (_syd, lax) = two_nodes().await;
    let parent = TraceParent::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        None,
    )
    .unwrap();
    let seen = with_trace_context(parent, lax.call_primary(WhichTrace))
        .await
        .unwrap();
    assert_eq!(
        seen.header.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    // Without one, nothing is invented.
    let seen = lax.call_primary(WhichTrace).await.unwrap();
    assert_eq!(seen.header, None);
}
