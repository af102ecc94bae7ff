//! `tenantd`: the Kioskcall tenant service's command line. The work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tenantd::auth::password::{HashCost, Password};
use tenantd::fleet::broker::BrokerSettings;
use tenantd::tls::TlsSource;
use tenantd::{Error, ServeConfig};

/// Exit code when the audit log fails verification.
const EXIT_AUDIT_BROKEN: u8 = 4;

#[derive(Debug, Parser)]
#[command(name = "tenantd", version, about = "Kioskcall tenant service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the store and the first super admin.
    Bootstrap {
        /// Data directory (created mode 0700).
        #[arg(long, env = "TENANTD_DATA")]
        data: PathBuf,
        /// The super admin's email.
        #[arg(long)]
        email: String,
        /// The super admin's display name.
        #[arg(long, default_value = "Super Admin")]
        name: String,
    },
    /// Serve the API and console over HTTPS.
    Serve {
        #[arg(long, env = "TENANTD_DATA")]
        data: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8443", env = "TENANTD_LISTEN")]
        listen: SocketAddr,
        /// PEM certificate chain; without it tenantd makes a local CA under the data dir.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Extra DNS names or addresses for the local CA's server certificates (HTTPS and MQTT).
        #[arg(long = "public-name")]
        public_names: Vec<String>,
        /// `managed` starts and supervises mosquitto; `none` serves the API and console only.
        #[arg(long, default_value = "managed", value_parser = ["managed", "none"])]
        broker: String,
        /// Where enrolled kiosks connect (MQTT over mTLS).
        #[arg(long, default_value = "0.0.0.0:8883")]
        mqtt_listen: SocketAddr,
        /// Where kiosks with a claim certificate ask to be enrolled.
        #[arg(long, default_value = "0.0.0.0:8885")]
        mqtt_provision_listen: SocketAddr,
        /// The broker's listener for tenantd itself (keep it on loopback).
        #[arg(long, default_value = "127.0.0.1:8884")]
        mqtt_service_listen: SocketAddr,
        /// The mosquitto executable.
        #[arg(long, default_value = "/usr/sbin/mosquitto")]
        mosquitto: PathBuf,
    },
    /// Create or refresh the demo organization and print its sign-ins (new passwords each time).
    Demo {
        #[arg(long, env = "TENANTD_DATA")]
        data: PathBuf,
    },
    /// Give a user a new generated password (to change at next sign-in) and end their sessions.
    ResetPassword {
        #[arg(long, env = "TENANTD_DATA")]
        data: PathBuf,
        #[arg(long)]
        email: String,
    },
    /// Audit log operations.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify every hash chain; exit code 4 when one is broken.
    Verify {
        #[arg(long, env = "TENANTD_DATA")]
        data: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tenantd=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tenantd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Error> {
    let cost = HashCost::default();
    match command {
        Command::Bootstrap { data, email, name } => {
            let password = std::env::var("TENANTD_BOOTSTRAP_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .map(Password::new);
            let (user, generated) = tenantd::bootstrap(&data, &email, &name, password, cost)?;
            println!("super admin {} created in {}", user.email, data.display());
            if let Some(p) = generated {
                println!("password (shown once): {}", p.expose());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            data,
            listen,
            tls_cert,
            tls_key,
            public_names,
            broker,
            mqtt_listen,
            mqtt_provision_listen,
            mqtt_service_listen,
            mosquitto,
        } => {
            let mut config = ServeConfig::new(data, listen);
            if broker == "managed" {
                config.fleet = Some(BrokerSettings {
                    mosquitto,
                    device_listen: mqtt_listen,
                    provision_listen: mqtt_provision_listen,
                    service_listen: mqtt_service_listen,
                    public_names: public_names.clone(),
                    ..BrokerSettings::default()
                });
            }
            config.tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => TlsSource::Files { cert, key },
                _ => TlsSource::LocalCa {
                    extra_names: public_names,
                },
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(Error::Runtime)?;
            runtime.block_on(tenantd::run(config, shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { data } => {
            let logins = tenantd::ensure_demo(&data, cost)?;
            println!("demo organization: {}", logins.org_slug);
            println!(
                "  org admin  {}  password {}",
                logins.admin_email,
                logins.admin_password.expose()
            );
            println!(
                "  agent      {}  password {}",
                logins.agent_email,
                logins.agent_password.expose()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ResetPassword { data, email } => {
            let password = tenantd::reset_password(&data, &email, cost)?;
            println!(
                "new password for {email} (shown once, to change at next sign-in): {}",
                password.expose()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { data },
        } => {
            let store = tenantd::open_existing(&data)?;
            let reports = store.blocking(|db| db.verify_all_chains())?;
            let mut broken = false;
            for r in &reports {
                match r.first_bad_seq {
                    None => println!("{}: ok, {} entries, head {}", r.chain, r.entries, r.head),
                    Some(seq) => {
                        broken = true;
                        println!("{}: BROKEN at entry {seq} (of {} read)", r.chain, r.entries);
                    }
                }
            }
            if reports.is_empty() {
                println!("no audit entries yet");
            }
            Ok(if broken {
                ExitCode::from(EXIT_AUDIT_BROKEN)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
