//! `fleetctl`: see the library for what it does.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleetctl::{human, run, Api, CliError, Request};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    version,
    about = "Kioskcall fleet admin's command line"
)]
struct Cli {
    /// tenantd's base URL.
    #[arg(long, env = "FLEETCTL_URL", default_value = "https://localhost:8443")]
    url: String,
    /// An organization admin's API token (kct_…).
    #[arg(long, env = "FLEETCTL_TOKEN", hide_env_values = true)]
    token: String,
    /// PEM file of the CA to trust (tenantd's local CA); default: the system's roots.
    #[arg(long, env = "FLEETCTL_CA")]
    ca: Option<std::path::PathBuf>,
    /// Organization slug (default: the token's).
    #[arg(long, env = "FLEETCTL_ORG")]
    org: Option<String>,
    /// Print the API's JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrollment tokens.
    #[command(name = "enroll-token", subcommand)]
    EnrollToken(TokenCommand),
    /// Enroll the kiosk showing an activation code into a site.
    Claim {
        code: String,
        #[arg(long)]
        site: i64,
    },
    /// Devices.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// A device's desired config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Send a command to a device.
    Cmd {
        device: String,
        #[command(subcommand)]
        action: CmdAction,
        /// The device refuses the command after this many seconds.
        #[arg(long, global = true)]
        expires_in: Option<u32>,
    },
    /// A device's commands and their results.
    Cmds { device: String },
    /// Revoke a device: cut off at once, cannot reconnect.
    Revoke { device: String },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    Create {
        #[arg(long)]
        site: i64,
        #[arg(long, default_value_t = 1)]
        uses: u32,
        #[arg(long, default_value_t = 72)]
        hours: u32,
    },
    List,
    Revoke {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    List,
    Show { device: String },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    Get {
        device: String,
    },
    /// Change some settings; the others keep their current values.
    Set {
        device: String,
        #[arg(long)]
        language: Option<String>,
        /// Comma-separated, e.g. fr,en,ar.
        #[arg(long)]
        languages: Option<String>,
        #[arg(long)]
        idle: Option<u32>,
        #[arg(long)]
        warning: Option<u32>,
        #[arg(long)]
        telemetry: Option<u32>,
        #[arg(long)]
        board: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CmdAction {
    Reboot,
    /// Restart one service (kiosk-sync, kiosk-media, kiosk-ui, kiosk-browser).
    Restart {
        service: String,
    },
    /// Rotate the device certificate.
    Rotate,
    FactoryReset,
    /// Install a firmware bundle.
    Update {
        url: String,
        #[arg(long)]
        sha256: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        size: u64,
    },
}

fn request(command: Command) -> Request {
    match command {
        Command::EnrollToken(TokenCommand::Create { site, uses, hours }) => {
            Request::EnrollTokenCreate { site, uses, hours }
        }
        Command::EnrollToken(TokenCommand::List) => Request::EnrollTokenList,
        Command::EnrollToken(TokenCommand::Revoke { id }) => Request::EnrollTokenRevoke { id },
        Command::Claim { code, site } => Request::Claim { code, site },
        Command::Devices(DevicesCommand::List) => Request::DevicesList,
        Command::Devices(DevicesCommand::Show { device }) => Request::DevicesShow { device },
        Command::Config(ConfigCommand::Get { device }) => Request::ConfigGet { device },
        Command::Config(ConfigCommand::Set {
            device,
            language,
            languages,
            idle,
            warning,
            telemetry,
            board,
        }) => {
            let languages = languages.map(|l| {
                l.split(',')
                    .map(|s| s.trim().to_string())
                    .collect::<Vec<_>>()
            });
            Request::ConfigSet {
                device,
                changes: json!({ "default_language": language, "languages": languages, "idle_s": idle,
                                 "warning_s": warning, "telemetry_interval_s": telemetry, "board_profile": board }),
            }
        }
        Command::Cmd {
            device,
            action,
            expires_in,
        } => {
            let mut command = match action {
                CmdAction::Reboot => json!({ "action": "reboot" }),
                CmdAction::Restart { service } => {
                    json!({ "action": "restart_service", "service": service })
                }
                CmdAction::Rotate => json!({ "action": "rotate_certificate" }),
                CmdAction::FactoryReset => json!({ "action": "factory_reset" }),
                CmdAction::Update {
                    url,
                    sha256,
                    version,
                    size,
                } => {
                    json!({ "action": "update", "url": url, "sha256": sha256, "version": version, "size": size })
                }
            };
            if let Some(s) = expires_in {
                command["expires_in_s"] = json!(s);
            }
            Request::Cmd { device, command }
        }
        Command::Cmds { device } => Request::CmdList { device },
        Command::Revoke { device } => Request::Revoke { device },
    }
}

async fn main_inner(cli: Cli) -> Result<String, CliError> {
    let ca = match &cli.ca {
        Some(path) => Some(std::fs::read(path).map_err(|source| CliError::Read {
            path: path.display().to_string(),
            source,
        })?),
        None => None,
    };
    let api = Api::new(&cli.url, &cli.token, ca.as_deref())?;
    let org = api.org(cli.org.as_deref()).await?;
    let req = request(cli.command);
    let answer = run(&api, &org, &req).await?;
    Ok(if cli.json {
        serde_json::to_string_pretty(&answer).unwrap_or_default()
    } else {
        human(&req, &answer)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fleetctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_inner(cli)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleetctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
