//! `icon-gateway`: serve the API; `icon-gateway token --sub USER [--admin] [--partner]
//! [--ttl 24h]` to mint a development bearer token signed with `ICON_JWT_SECRET`; or
//! `icon-gateway migrate` to apply the database migrations and exit.

use icon_gateway::auth::settings::JwtSettings;
use icon_gateway::auth::{claims, Claims, JwtKeys};
use icon_gateway::{Application, GatewaySettings};
use icon_runtime::{settings::parse_duration, shutdown, telemetry, Env};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: icon-gateway                      serve the API\n       \
icon-gateway token --sub USER [--admin] [--partner] [--email ADDR] [--ttl 24h]
                                           print an HS256 bearer token (needs ICON_JWT_SECRET);
                                           --partner: a partner token, owned as partner:USER
       icon-gateway migrate              apply the database migrations (ICON_DATABASE_URL) and exit";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(
        args.first().map(String::as_str),
        Some("-h" | "--help" | "help")
    ) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let env = Env::from_process();
    match args.first().map(String::as_str) {
        None => match GatewaySettings::from_env(&env) {
            Ok(settings) => serve(settings).await,
            Err(e) => {
                eprintln!("icon-gateway: {e}");
                ExitCode::from(2)
            }
        },
        // Minting reads only the token settings: a shell that mints tokens needs no database
        // URL or secrets key.
        Some("token") => match JwtSettings::from_env(&env) {
            Ok(jwt) => mint(&jwt, &args[1..]),
            Err(e) => {
                eprintln!("icon-gateway: {e}");
                ExitCode::from(2)
            }
        },
        Some("migrate") => migrate(&env).await,
        Some(other) => {
            eprintln!("icon-gateway: unknown command `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `icon-gateway migrate`: applies the schema migrations and exits, for a deployment's
/// migrations Job (every service also migrates at start, under an advisory lock, so this only
/// moves the work ahead of the rollout). Needs only `ICON_DATABASE_URL`; waits while
/// PostgreSQL is not reachable yet, until SIGTERM.
async fn migrate(env: &Env) -> ExitCode {
    let url = env.string("ICON_DATABASE_URL", icon_store::pool::DEFAULT_DATABASE_URL);
    let log = match telemetry::TelemetrySettings::from_env(env) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("icon-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = match telemetry::init(&log, "icon-gateway") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("icon-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let token = shutdown::CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    match icon_store::connect(&icon_store::PoolSettings::new(&url), &token).await {
        Ok(Some(_)) => {
            println!("icon-gateway: the database schema is up to date");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("icon-gateway: cannot migrate the database: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: GatewaySettings) -> ExitCode {
    let telemetry = match telemetry::init(&settings.log, "icon-gateway") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("icon-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let token = shutdown::CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    let code = serve_until_stopped(settings, token).await;
    telemetry.shutdown().await;
    code
}

async fn serve_until_stopped(
    settings: GatewaySettings,
    token: shutdown::CancellationToken,
) -> ExitCode {
    match Application::build(settings, token).await {
        Ok(Some(app)) => match app.run_until_stopped().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "gateway failed");
                ExitCode::FAILURE
            }
        },
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gateway cannot start");
            eprintln!("icon-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mint(jwt: &JwtSettings, args: &[String]) -> ExitCode {
    let mut sub = None;
    let mut admin = false;
    let mut partner = false;
    let mut email = None;
    let mut ttl = Duration::from_secs(24 * 3600);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sub" => sub = it.next().cloned(),
            "--admin" => admin = true,
            "--partner" => partner = true,
            "--email" => email = it.next().cloned(),
            "--ttl" => match it.next().map(|v| parse_duration(v)) {
                Some(Ok(d)) => ttl = d,
                _ => {
                    eprintln!("icon-gateway token: --ttl needs a duration such as 1h or 24h");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("icon-gateway token: unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(sub) = sub else {
        eprintln!("icon-gateway token: --sub USER is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let Some(secret) = &jwt.secret else {
        eprintln!("icon-gateway token: set ICON_JWT_SECRET (openssl rand -hex 32) to mint tokens");
        return ExitCode::from(2);
    };
    let mut claims = Claims::new(sub, ttl);
    if admin {
        claims = claims.with_scope(claims::ADMIN_SCOPE);
    }
    if partner {
        claims = claims.with_scope(claims::PARTNER_SCOPE);
    }
    if let Some(email) = email {
        claims = claims.with_email(email);
    }
    match JwtKeys::new(secret.expose()).mint_claims(&claims) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("icon-gateway token: {e}");
            ExitCode::FAILURE
        }
    }
}
