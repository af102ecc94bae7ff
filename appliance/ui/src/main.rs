//! `kiosk-ui`: the kiosk's touch screen and customer journey. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kiosk_bus::BusAddress;
use kiosk_ui::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "kiosk-ui",
    version,
    about = "Kioskcall kiosk: the touch screen and the customer journey"
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        default_value = "/etc/kioskcall/ui.toml",
        env = "KIOSK_UI_CONFIG"
    )]
    config: PathBuf,
    /// `system`, `session`, or a D-Bus address (a private bus in development and tests).
    #[arg(long, default_value = "system", env = "KIOSKCALL_DBUS_ADDRESS")]
    bus: String,
    /// Check the configuration file (and the board's display data) and exit.
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
            eprintln!("kiosk-ui: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        return match kiosk_ui::load_display(&settings) {
            Ok(d) => {
                println!(
                    "{}: ok (listen {}, board {:?}: {:.2} px/mm, touch targets {} px)",
                    cli.config.display(),
                    settings.listen,
                    d.board,
                    d.px_per_mm(),
                    d.min_target_px()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kiosk-ui: {e}");
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
            eprintln!("kiosk-ui: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let stop = kiosk_bus::stop_on_signals();
        match kiosk_ui::run(settings, BusAddress::parse(&cli.bus), stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "kiosk-ui stopped");
                eprintln!("kiosk-ui: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
