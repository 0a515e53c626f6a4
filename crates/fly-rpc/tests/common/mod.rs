//! Procedures and helpers shared by the fly-rpc integration tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fly_rpc::{CallContext, Discovery, Node, NodeBuilder, Procedure, Regions};
use serde::{Deserialize, Serialize};

pub const SECRET: &str = "test secret, at least sixteen bytes";

/// What a node's handlers record.
#[derive(Debug, Default)]
pub struct Counters {
    pub runs: AtomicUsize,
    pub name: String,
}

impl Counters {
    pub fn named(name: &str) -> Arc<Self> {
        Arc::new(Counters {
            runs: AtomicUsize::new(0),
            name: name.to_owned(),
        })
    }
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

/// Echoes its text with the serving node's name.
#[derive(Debug, Serialize, Deserialize)]
pub struct Echo(pub String);

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct EchoReply {
    pub text: String,
    pub served_by: String,
    pub local: bool,
    pub caller_region: String,
}

impl Procedure for Echo {
    const NAME: &'static str = "echo";
    const RETRY_SAFE: bool = true;
    type Output = EchoReply;
    type Error = AppError;
    type State = Counters;

    async fn run(self, state: Arc<Counters>, ctx: CallContext) -> Result<EchoReply, AppError> {
        state.runs.fetch_add(1, Ordering::SeqCst);
        Ok(EchoReply {
            text: self.0,
            served_by: state.name.clone(),
            local: ctx.local,
            caller_region: ctx.caller_region,
        })
    }
}

/// The app's own error type, carried back typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("not enough stock for {item}: {left} left")]
    OutOfStock { item: String, left: u32 },
}

/// Always fails with the app's error.
#[derive(Debug, Serialize, Deserialize)]
pub struct Buy {
    pub item: String,
}

impl Procedure for Buy {
    const NAME: &'static str = "buy";
    type Output = ();
    type Error = AppError;
    type State = Counters;

    async fn run(self, state: Arc<Counters>, _: CallContext) -> Result<(), AppError> {
        state.runs.fetch_add(1, Ordering::SeqCst);
        Err(AppError::OutOfStock {
            item: self.item,
            left: 0,
        })
    }
}

/// Panics in its handler.
#[derive(Debug, Serialize, Deserialize)]
pub struct Explode;

impl Procedure for Explode {
    const NAME: &'static str = "explode";
    type Output = ();
    type Error = AppError;
    type State = Counters;

    async fn run(self, state: Arc<Counters>, _: CallContext) -> Result<(), AppError> {
        state.runs.fetch_add(1, Ordering::SeqCst);
        panic!("boom");
    }
}

/// Sleeps, then answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Sleep(pub u64);

impl Procedure for Sleep {
    const NAME: &'static str = "sleep";
    type Output = ();
    type Error = AppError;
    type State = Counters;

    async fn run(self, state: Arc<Counters>, _: CallContext) -> Result<(), AppError> {
        state.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.0)).await;
        Ok(())
    }
}

/// Same name as `Echo` but other arguments: version skew in the arguments.
#[derive(Debug, Serialize, Deserialize)]
pub struct EchoV2 {
    pub text: String,
    pub loud: bool,
}

impl Procedure for EchoV2 {
    const NAME: &'static str = "echo";
    type Output = EchoReply;
    type Error = AppError;
    type State = Counters;

    async fn run(self, _: Arc<Counters>, _: CallContext) -> Result<EchoReply, AppError> {
        unreachable!("only ever called, never served")
    }
}

/// Only the newer build of the app has this one.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewFeature;

impl Procedure for NewFeature {
    const NAME: &'static str = "new_feature";
    type Output = ();
    type Error = AppError;
    type State = Counters;

    async fn run(self, _: Arc<Counters>, _: CallContext) -> Result<(), AppError> {
        Ok(())
    }
}

/// A builder bound to a free loopback port, serving every test procedure.
pub fn node(region: &str, primary: &str, counters: &Arc<Counters>) -> NodeBuilder {
    Node::builder()
        .regions(Regions::new(region, primary))
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .secret(SECRET)
        .version(format!("test-{}", counters.name))
        .procedure::<Echo>(Arc::clone(counters))
        .procedure::<Buy>(Arc::clone(counters))
        .procedure::<Explode>(Arc::clone(counters))
        .procedure::<Sleep>(Arc::clone(counters))
}

pub async fn start(builder: NodeBuilder, discovery: impl Discovery) -> Node {
    builder.discovery(discovery).start().await.unwrap()
}
