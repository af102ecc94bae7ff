//! `kiosk-sync`: the kiosk's cloud link daemon. The work is in the library (`daemon`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kiosk_bus::BusAddress;
use kiosk_sync::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "kiosk-sync",
    version,
    about = "Kioskcall kiosk: the one link to the cloud"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        default_value = "/etc/kioskcall/sync.toml",
        env = "KIOSK_SYNC_CONFIG"
    )]
    config: PathBuf,
    /// `system`, `session`, or a D-Bus address (a private bus in development and tests).
    #[arg(long, default_value = "system", env = "KIOSKCALL_DBUS_ADDRESS")]
    bus: String,
    /// Check the configuration file and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttc=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kiosk-sync: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiosk-sync: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let stop = kiosk_bus::stop_on_signals();
        match kiosk_sync::daemon::run(settings, BusAddress::parse(&cli.bus), stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "kiosk-sync stopped");
                eprintln!("kiosk-sync: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
