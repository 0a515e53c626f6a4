//! `flypg status`: this node's identity and what it can see of its peers,
//! configured by the same environment as the app.

pub(crate) async fn run(json: bool) -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", fly_rpc::StatusReport::from_env().await?.render(json));
    Ok(())
}
