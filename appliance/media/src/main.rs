//! `kiosk-media`: the kiosk's media engine daemon. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kiosk_bus::BusAddress;
use kiosk_media::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "kiosk-media",
    version,
    about = "Kioskcall kiosk: camera, encoder and WebRTC calls"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        default_value = "/etc/kioskcall/media.toml",
        env = "KIOSK_MEDIA_CONFIG"
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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kiosk-media: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        // The board profile is part of the configuration: check it too.
        return match kiosk_media::load_board(&settings) {
            Ok(board) => {
                println!(
                    "{}: ok (board profile {:?})",
                    cli.config.display(),
                    board.name
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kiosk-media: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kiosk-media: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let stop = kiosk_bus::stop_on_signals();
        match kiosk_media::run(settings, BusAddress::parse(&cli.bus), stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "kiosk-media stopped");
                eprintln!("kiosk-media: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
