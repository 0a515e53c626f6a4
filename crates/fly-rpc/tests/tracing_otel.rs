//! One trace across regions with an OpenTelemetry tracer: the serving span
//! continues the caller's. Alone in its test binary, because it installs a
//! tracing subscriber and tracing caches which spans are enabled per process.

mod common;
mod trace_probe;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use trace_probe::{WhichTrace, two_nodes};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn an_opentelemetry_span_continues_on_the_serving_node() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("fly-rpc-test")));
    // The current-thread runtime runs every task of both nodes on this
    // thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let (_syd, lax) = two_nodes().await;

    let request = tracing::info_span!("lax.request");
    let caller_trace = request
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string();
    assert_ne!(caller_trace, "00000000000000000000000000000000");
    let seen = lax
        .call_primary(WhichTrace)
        .instrument(request)
        .await
        .unwrap();
    assert_eq!(seen.header.as_deref(), Some(caller_trace.as_str()));
    assert_eq!(
        seen.span, caller_trace,
        "the serving span is in the same trace"
    );
}
