//! The todo app's binary: everything comes from the environment.
//! `todo status` prints what this instance sees of the app's peers.

fn main() -> std::process::ExitCode {
    fly_postgres_todo::log_to_stderr("todo", tracing::Level::INFO);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("todo: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let job = match args.as_slice() {
        [] => runtime.block_on(fly_postgres_todo::run_from_env()),
        // `fly ssh console -C "todo status"`: the same env as the app.
        ["status"] => runtime.block_on(fly_postgres_todo::print_status(false)),
        ["status", "--json"] => runtime.block_on(fly_postgres_todo::print_status(true)),
        _ => {
            eprintln!(
                "usage: todo             serve the app (configured by env)\n       \
                 todo status [--json] this instance's regions and every peer's version and procedures"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match job {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("todo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
