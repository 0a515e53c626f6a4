//! `flypg bench report`: runs the standard benchmarks and fault drills,
//! keeps each one's JSON with the command, date and machine that made it,
//! and writes `docs/performance.md` from those files: the one page every
//! published figure comes from.

mod figure;
mod load_tables;
mod machine;
mod page;
mod run_record;
mod suite;

use std::path::PathBuf;

pub(crate) use run_record::RunRecord;

/// Options of `flypg bench report`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// Run the benchmarks first (about 10 minutes) and save their JSON;
    /// without it, the page is written again from the saved JSON.
    #[arg(long)]
    run: bool,
    /// With --run: only these runs, by name (default: all but the hour-long
    /// soak). Names: repo, repo-cost, rpc, tracker, tracker-load, sweeps,
    /// soak (an hour), sessions, flood, chaos, and (as root) fly-demo,
    /// fly-chaos.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where each run's JSON is kept.
    #[arg(long, default_value = "docs/bench", value_name = "DIR")]
    data: PathBuf,
    /// The page to write.
    #[arg(long, default_value = "docs/performance.md", value_name = "FILE")]
    out: PathBuf,
    /// Where the benchmarks write their charts (SVG, with --run) and where
    /// the page looks for them; keep it the page's own folder, as the page
    /// links them by file name.
    #[arg(long, default_value = "docs", value_name = "DIR")]
    charts: PathBuf,
}

pub(crate) async fn run(args: ReportArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.run {
        if let Some(unknown) = args.only.iter().find(|n| suite::find(n).is_none()) {
            return Err(format!(
                "no run named {unknown:?}; the runs: {}",
                suite::names().join(", ")
            )
            .into());
        }
        std::fs::create_dir_all(&args.data)?;
        let machine = machine::Machine::read();
        for entry in suite::SUITE.iter().filter(|e| {
            if args.only.is_empty() {
                !e.long
            } else {
                args.only.iter().any(|n| n == e.name)
            }
        }) {
            eprintln!("  report: running `{}` ...", entry.command(&args.charts));
            let record = run_record::run(entry, &args.charts, &machine).await?;
            let path = args.data.join(format!("{}.json", entry.name));
            std::fs::write(&path, serde_json::to_string_pretty(&record)? + "\n")?;
        }
    }
    let records = run_record::load_all(&args.data)?;
    if records.is_empty() {
        return Err(format!(
            "no saved runs in {}: run `flypg bench report --run` first",
            args.data.display()
        )
        .into());
    }
    let text = page::render(&records, &args.charts, &args.data);
    std::fs::write(&args.out, text)?;
    eprintln!(
        "  report: {} written from {} runs",
        args.out.display(),
        records.len()
    );
    Ok(())
}
