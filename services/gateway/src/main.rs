//! `icon-gateway`: serve the API, or `icon-gateway token --sub USER [--admin] [--partner]
//! [--ttl 24h]` to mint a development bearer token signed with `ICON_JWT_SECRET`.

use icon_gateway::auth::{claims, Claims, JwtKeys};
use icon_gateway::{Application, GatewaySettings};
use icon_runtime::{settings::parse_duration, shutdown, telemetry, Env};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: icon-gateway                      serve the API\n       \
icon-gateway token --sub USER [--admin] [--partner] [--email ADDR] [--ttl 24h]
                                           print an HS256 bearer token (needs ICON_JWT_SECRET);
                                           --partner: a partner token, owned as partner:USER";

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
    let settings = match GatewaySettings::from_env(&Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("icon-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    match args.first().map(String::as_str) {
        None => serve(settings).await,
        Some("token") => mint(&settings, &args[1..]),
        Some(other) => {
            eprintln!("icon-gateway: unknown command `{other}`\n{USAGE}");
            ExitCode::from(2)
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

fn mint(settings: &GatewaySettings, args: &[String]) -> ExitCode {
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
    let Some(secret) = &settings.jwt.secret else {
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
