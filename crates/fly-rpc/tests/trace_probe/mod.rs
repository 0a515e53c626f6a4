//! A procedure that reports the trace it is served in, and two nodes that
//! serve it: shared by the trace tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use fly_rpc::{CallContext, Procedure, StaticPeers};
use opentelemetry::trace::TraceContextExt;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::common::{Counters, node, start};

/// Answers with the trace ids the serving side sees.
#[derive(Serialize, Deserialize)]
pub struct WhichTrace;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SeenTrace {
    /// From the call's `traceparent`.
    pub header: Option<String>,
    /// Of the serving span, as OpenTelemetry knows it.
    pub span: String,
}

impl Procedure for WhichTrace {
    const NAME: &'static str = "which_trace";
    type Output = SeenTrace;
    type Error = String;
    type State = ();
    async fn run(self, _: Arc<()>, ctx: CallContext) -> Result<SeenTrace, String> {
        let span = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id()
            .to_string();
        Ok(SeenTrace {
            header: ctx.trace_context.map(|t| t.trace_id().to_owned()),
            span,
        })
    }
}

pub async fn two_nodes() -> (fly_rpc::Node, fly_rpc::Node) {
    let syd = start(
        node("syd", "syd", &Counters::named("syd")).procedure::<WhichTrace>(Arc::new(())),
        StaticPeers::new(),
    )
    .await;
    let lax = start(
        node("lax", "syd", &Counters::named("lax")),
        StaticPeers::new().with("syd", syd.local_addr().expect("rpc listener")),
    )
    .await;
    (syd, lax)
}
