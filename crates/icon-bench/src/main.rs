use std::process::ExitCode;

use icon_bench::args::{self, Parsed};

#[tokio::main]
async fn main() -> ExitCode {
    let env_secret = std::env::var("ICON_JWT_SECRET").ok();
    let cfg = match args::parse(std::env::args().skip(1), env_secret) {
        Ok(Parsed::Run(cfg)) => cfg,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("icon-bench: {e}\n(icon-bench --help for usage)");
            return ExitCode::from(2);
        }
    };
    let summary = match icon_bench::run::run(&cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("icon-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", icon_bench::report::table(&summary));
    if let Err(e) = icon_bench::report::write_files(&summary, &cfg) {
        eprintln!("icon-bench: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
