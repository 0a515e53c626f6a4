//! `flypg status`: this node's identity and what it can see of its peers,
//! configured by the same environment as the app.

pub(crate) async fn run(json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let report = fly_rpc::StatusReport::from_env().await?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(())
}
