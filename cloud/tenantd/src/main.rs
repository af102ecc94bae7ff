//! `tenantd`: the Kioskcall tenant service's command line. The work is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use tenantd::auth::password::{HashCost, Password};
use tenantd::fleet::broker::BrokerSettings;
use tenantd::fleet::external::{BrokerAdmin, ExternalBroker, ExternalFiles};
use tenantd::fleet::urls::{AdminUrl, BrokerUrl, CrlBaseUrl};
use tenantd::fleet::FleetBroker;
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
    Serve(Box<ServeArgs>),
    /// Create or refresh the demo organization and print its sign-ins (new passwords each time).
    Demo {
        #[arg(long, env = "TENANTD_DATA")]
        data: PathBuf,
    },
    /// Write a development kiosk's kit (claim certificate, cloud CA, a new enrollment token) for
    /// an organization, as `scripts/up` gives it to the kiosk-sync it starts.
    KioskKit {
        #[arg(long, env = "TENANTD_DATA")]
        data: PathBuf,
        /// The organization the kiosk enrolls into (its first site).
        #[arg(long, default_value = "demo")]
        org: String,
        /// The kit's directory (created mode 0700).
        #[arg(long)]
        out: PathBuf,
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
    /// Fleet operations.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
}

/// Which broker `serve` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BrokerChoice {
    /// tenantd starts and supervises mosquitto.
    Managed,
    /// No broker and no fleet link.
    None,
    /// An operator's MQTT 5 broker.
    External(BrokerUrl),
}

impl FromStr for BrokerChoice {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw {
            "managed" => Ok(BrokerChoice::Managed),
            "none" => Ok(BrokerChoice::None),
            url => url
                .parse()
                .map(BrokerChoice::External)
                .map_err(|e| format!("expected `managed`, `none` or `mqtts://HOST[:PORT]`: {e}")),
        }
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
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
    /// `managed` starts and supervises mosquitto; `none` serves the API and console only;
    /// `mqtts://HOST[:PORT]` (port 8883 by default) uses an external MQTT 5 broker.
    #[arg(
        long,
        default_value = "managed",
        value_name = "managed|none|mqtts://HOST[:PORT]"
    )]
    broker: BrokerChoice,
    /// Where enrolled kiosks connect (MQTT over mTLS), with the managed broker.
    #[arg(long, default_value = "0.0.0.0:8883")]
    mqtt_listen: SocketAddr,
    /// Where kiosks with a claim certificate ask to be enrolled, with the managed broker.
    #[arg(long, default_value = "0.0.0.0:8885")]
    mqtt_provision_listen: SocketAddr,
    /// The managed broker's listener for tenantd itself (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:8884")]
    mqtt_service_listen: SocketAddr,
    /// The mosquitto executable, with the managed broker.
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// External broker: the CA certificate(s) (PEM) that signed its server certificate. The
    /// system's roots are not trusted. Kiosks get it as their claim batch's `server_ca_pem`.
    #[arg(long, value_name = "FILE")]
    broker_ca: Option<PathBuf>,
    /// External broker: tenantd's client certificate (PEM), from its service CA
    /// (`tenantd fleet export-broker-files`).
    #[arg(long, value_name = "FILE")]
    service_cert: Option<PathBuf>,
    /// External broker: the private key (PEM) of --service-cert.
    #[arg(long, value_name = "FILE")]
    service_key: Option<PathBuf>,
    /// External broker: the fleet link's MQTT client id [default: svc-tenantd].
    #[arg(long, value_name = "ID")]
    service_client_id: Option<String>,
    /// External broker: its admin API (EMQX's REST API base, e.g. https://emqx:18084), used to
    /// ban and kick a revoked device. https://, or http:// on localhost only.
    #[arg(long, value_name = "URL", requires = "broker_admin_key_file")]
    broker_admin_url: Option<AdminUrl>,
    /// External broker: a file holding the admin API key as one line `KEY:SECRET` (mode 0600).
    #[arg(long, value_name = "FILE", requires = "broker_admin_url")]
    broker_admin_key_file: Option<PathBuf>,
    /// Base URL under which brokers fetch the CRLs (BASE/device.crl and BASE/claim.crl), named
    /// in every device and claim certificate issued from now on; tenantd serves them at
    /// https://HOST:PORT/pki/v1.
    #[arg(long, value_name = "URL")]
    crl_base_url: Option<CrlBaseUrl>,
    /// A JSON file holding the platform's SMS gateways, in fail-over order, for organizations
    /// that set none (keep it mode 0600: it holds the providers' credentials). Without it, the
    /// `log` gateway writes every SMS to DATA/sms/outbox.jsonl (development only).
    #[arg(long, value_name = "FILE")]
    sms_gateways: Option<PathBuf>,
}

impl ServeArgs {
    /// The checks clap cannot express: the external broker's flags go with `mqtts://` only,
    /// and all three files are required with it.
    fn check(&self) -> Result<(), clap::Error> {
        let mut cli = Cli::command();
        cli.build();
        let mut serve = cli.find_subcommand("serve").cloned().unwrap_or(cli);
        let mut error = |kind, message: String| serve.error(kind, message);
        let given: Vec<&str> = [
            ("--broker-ca", self.broker_ca.is_some()),
            ("--service-cert", self.service_cert.is_some()),
            ("--service-key", self.service_key.is_some()),
            ("--service-client-id", self.service_client_id.is_some()),
            ("--broker-admin-url", self.broker_admin_url.is_some()),
            (
                "--broker-admin-key-file",
                self.broker_admin_key_file.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        match &self.broker {
            BrokerChoice::External(url) => {
                let missing: Vec<&str> = ["--broker-ca", "--service-cert", "--service-key"]
                    .into_iter()
                    .filter(|f| !given.contains(f))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(error(
                        ErrorKind::MissingRequiredArgument,
                        format!(
                            "--broker {url} needs --broker-ca FILE, --service-cert FILE and \
                             --service-key FILE (missing: {})",
                            missing.join(", ")
                        ),
                    ))
                }
            }
            BrokerChoice::Managed | BrokerChoice::None => match given.first() {
                None => Ok(()),
                Some(flag) => Err(error(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "{flag} is for an external broker: use it with --broker mqtts://HOST[:PORT]"
                    ),
                )),
            },
        }
    }

    /// The serve configuration; reads and checks the external broker's files.
    fn into_config(self) -> Result<ServeConfig, Error> {
        let mut config = ServeConfig::new(self.data, self.listen);
        config.fleet = match self.broker {
            BrokerChoice::Managed => Some(FleetBroker::Managed(BrokerSettings {
                mosquitto: self.mosquitto,
                device_listen: self.mqtt_listen,
                provision_listen: self.mqtt_provision_listen,
                service_listen: self.mqtt_service_listen,
                public_names: self.public_names.clone(),
                ..BrokerSettings::default()
            })),
            BrokerChoice::None => None,
            BrokerChoice::External(url) => {
                // `check` made sure all three are there.
                let (Some(server_ca), Some(service_cert), Some(service_key)) =
                    (self.broker_ca, self.service_cert, self.service_key)
                else {
                    unreachable!("ServeArgs::check requires the external broker's files")
                };
                let files = ExternalFiles {
                    server_ca,
                    service_cert,
                    service_key,
                };
                let mut external = ExternalBroker::load(url, &files, self.service_client_id)?;
                if let (Some(url), Some(key_file)) =
                    (self.broker_admin_url, self.broker_admin_key_file)
                {
                    let admin = BrokerAdmin::load(url, &key_file, &external.server_ca_pem)?;
                    external = external.with_admin(admin);
                }
                Some(FleetBroker::External(external))
            }
        };
        config.crl_base_url = self.crl_base_url;
        if let Some(file) = &self.sms_gateways {
            config.sms_gateways = read_sms_gateways(file)?;
        }
        config.tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::LocalCa {
                extra_names: self.public_names,
            },
        };
        Ok(config)
    }
}

/// Reads the platform's SMS gateways (checked again, whole, when `serve` starts).
fn read_sms_gateways(
    file: &std::path::Path,
) -> Result<Vec<tenantd::otp::sms::GatewayConfig>, Error> {
    let invalid = |message: String| Error::Invalid {
        what: "--sms-gateways",
        message: format!("{}: {message}", file.display()),
    };
    let text = std::fs::read_to_string(file).map_err(|e| invalid(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = %file.display(),
                    "the SMS gateways file is readable by other users: chmod 600 it"
                );
            }
        }
    }
    serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Write what an external broker's operator needs: the CA certificates, the current CRLs,
    /// a new client certificate and key for tenantd, and the ACLs. Never a CA key.
    ExportBrokerFiles {
        #[arg(long, env = "TENANTD_DATA")]
        data: PathBuf,
        /// The directory to write into (made with mode 0700 when missing; files there of the
        /// same names are replaced).
        #[arg(long)]
        out: PathBuf,
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
    if let Command::Serve(args) = &cli.command {
        if let Err(e) = args.check() {
            e.exit();
        }
    }
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
        Command::Serve(args) => {
            let config = args.into_config()?;
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
        Command::KioskKit { data, org, out } => {
            let kit = tenantd::kit::kiosk_kit(&data, &org, &out)?;
            println!("claim certificate  {}", kit.claim_cert.display());
            println!("claim key          {}", kit.claim_key.display());
            println!("cloud CA           {}", kit.cloud_ca.display());
            println!("enrollment token   {}", kit.enrollment_token.display());
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
        Command::Fleet {
            command: FleetCommand::ExportBrokerFiles { data, out },
        } => {
            let exported = tenantd::export_broker_files(&data, &out)?;
            println!(
                "wrote {} files to {}:",
                exported.files.len(),
                exported.dir.display()
            );
            for f in &exported.files {
                println!("  {:<24} {}", f.name, f.what);
            }
            let until = jiff::Timestamp::from_second(exported.service_not_after)
                .map(|t| t.strftime("%Y-%m-%d").to_string())
                .unwrap_or_else(|_| exported.service_not_after.to_string());
            println!(
                "the service certificate is valid until {until}: export again before then and \
                 give tenantd the new pair"
            );
            Ok(ExitCode::SUCCESS)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let argv = ["tenantd", "serve", "--data", "/tmp/d"].iter().chain(args);
        match Cli::try_parse_from(argv)?.command {
            Command::Serve(args) => {
                args.check()?;
                Ok(*args)
            }
            other => panic!("not serve: {other:?}"),
        }
    }

    fn refused(args: &[&str]) -> String {
        serve(args).expect_err("refused").to_string()
    }

    #[test]
    fn broker_is_managed_none_or_an_mqtts_url() {
        assert_eq!(serve(&[]).unwrap().broker, BrokerChoice::Managed);
        assert_eq!(
            serve(&["--broker", "none"]).unwrap().broker,
            BrokerChoice::None
        );
        let external = serve(&[
            "--broker",
            "mqtts://emqx.example",
            "--broker-ca",
            "ca.pem",
            "--service-cert",
            "svc.pem",
            "--service-key",
            "svc.key",
        ])
        .unwrap();
        let BrokerChoice::External(url) = external.broker else {
            panic!("external")
        };
        assert_eq!((url.host(), url.port()), ("emqx.example", 8883));

        for (value, says) in [
            ("mqtt://emqx.example", "does not start with mqtts://"),
            (
                "emqx",
                "expected `managed`, `none` or `mqtts://HOST[:PORT]`",
            ),
            ("mqtts://emqx.example:99999", "not between 1 and 65535"),
            ("mqtts://", "names no host"),
        ] {
            let e = refused(&["--broker", value]);
            assert!(e.contains("--broker") && e.contains(says), "{value}: {e}");
        }
    }

    #[test]
    fn the_external_brokers_flags_go_with_mqtts_only_and_together() {
        let e = refused(&["--broker", "mqtts://emqx.example", "--broker-ca", "ca.pem"]);
        assert!(e.contains("missing: --service-cert, --service-key"), "{e}");
        let e = refused(&["--broker-ca", "ca.pem"]);
        assert!(e.contains("--broker-ca is for an external broker"), "{e}");
        let e = refused(&["--broker", "none", "--service-client-id", "svc-2"]);
        assert!(
            e.contains("--service-client-id is for an external broker"),
            "{e}"
        );
        let e = refused(&["--broker-admin-url", "https://emqx.example:18084"]);
        assert!(e.contains("--broker-admin-key-file"), "{e}");
        let e = refused(&["--broker-admin-url", "http://emqx.example:18083"]);
        assert!(e.contains("in the clear"), "{e}");
        let e = refused(&["--crl-base-url", "ftp://crl.example"]);
        assert!(e.contains("does not start with http:// or https://"), "{e}");
        assert_eq!(
            serve(&["--crl-base-url", "http://crl.example/pki/v1/"])
                .unwrap()
                .crl_base_url
                .map(|u| u.device()),
            Some("http://crl.example/pki/v1/device.crl".to_string())
        );
    }

    #[test]
    fn the_platforms_sms_gateways_come_from_a_json_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sms.json");
        std::fs::write(
            &file,
            r#"[{"kind": "http", "name": "main", "url": "https://sms.example.test/send",
                 "body": {"to": "{to}", "text": "{text}"}}, {"kind": "log"}]"#,
        )
        .unwrap();
        let args = serve(&["--sms-gateways", file.to_str().unwrap(), "--broker", "none"]).unwrap();
        let config = args.into_config().unwrap();
        assert_eq!(config.sms_gateways.len(), 2);
        assert_eq!(config.sms_gateways[0].name(), "http:main");
        std::fs::write(&file, r#"[{"kind": "carrier-pigeon"}]"#).unwrap();
        let e = read_sms_gateways(&file).unwrap_err().to_string();
        assert!(
            e.contains("--sms-gateways") && e.contains("sms.json"),
            "{e}"
        );
        assert_eq!(
            serve(&[]).unwrap().into_config().unwrap().sms_gateways,
            tenantd::otp::default_gateways()
        );
    }

    #[test]
    fn usage_errors_exit_with_code_2() {
        let e = serve(&["--broker", "mqtts://emqx.example"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
    }
}
