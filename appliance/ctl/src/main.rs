//! `kioskctl`: the kiosk's service CLI. It talks to the kiosk services over D-Bus only, so it
//! needs no secret and works the same on the shop hardware and in the QEMU image.
//!
//! Exit codes: 0 done, 1 the service refused or failed (the message says why), 2 bad usage,
//! 3 the service is not reachable on the bus, 4 `wait` timed out.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kiosk_bus::{BusAddress, Sync1Proxy, SyncStatus};

#[derive(Debug, Parser)]
#[command(name = "kioskctl", version, about = "Kioskcall kiosk service CLI")]
struct Cli {
    /// `system`, `session`, or a D-Bus address.
    #[arg(
        long,
        global = true,
        default_value = "system",
        env = "KIOSKCALL_DBUS_ADDRESS"
    )]
    bus: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Enrollment, link, config and outbox state of kiosk-sync.
    Status,
    /// Enroll this kiosk with a token from the fleet admin.
    Enroll { token: String },
    /// Print the config in force (JSON).
    Config,
    /// Queue an event for the cloud: KIND and a JSON object body.
    Event { kind: String, body: String },
    /// Wait until kiosk-sync reaches a state (`enrolled`, `awaiting-activation`, `connected`).
    Wait {
        state: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

fn print_status(s: &SyncStatus, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "state": s.state, "device_id": s.device_id, "activation_code": s.activation_code,
                "connected": s.connected, "config_version": s.config_version,
                "outbox_depth": s.outbox_depth, "outbox_records": s.outbox_records,
                "certificate_not_after": s.certificate_not_after, "firmware": s.firmware,
                "slot": s.slot, "last_error": s.last_error,
            })
        );
        return;
    }
    let or_dash = |v: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    println!("state:            {}", s.state);
    println!("device:           {}", or_dash(&s.device_id));
    if !s.activation_code.is_empty() {
        println!("activation code:  {}", s.activation_code);
    }
    println!(
        "connected:        {}",
        if s.connected { "yes" } else { "no" }
    );
    println!(
        "config in force:  {}",
        if s.config_version == 0 {
            "none".to_string()
        } else {
            format!("version {}", s.config_version)
        }
    );
    println!(
        "outbox:           {} waiting ({} records)",
        s.outbox_depth, s.outbox_records
    );
    if s.certificate_not_after > 0 {
        println!(
            "certificate until {} (Unix seconds)",
            s.certificate_not_after
        );
    }
    println!("firmware:         {} {}", s.firmware, s.slot);
    if !s.last_error.is_empty() {
        println!("last error:       {}", s.last_error);
    }
}

fn reached(s: &SyncStatus, want: &str) -> bool {
    match want {
        "connected" => s.connected,
        other => s.state == other,
    }
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    if let Cmd::Wait { state, .. } = &cli.command {
        if !["enrolled", "awaiting-activation", "connected"].contains(&state.as_str()) {
            return Err((
                2,
                format!("state {state:?}: enrolled, awaiting-activation or connected"),
            ));
        }
    }
    let bus = BusAddress::parse(&cli.bus);
    let unreachable = |e: zbus::Error| (3, format!("D-Bus ({bus}): {e}"));
    let conn = tokio::time::timeout(Duration::from_secs(10), bus.connect())
        .await
        .unwrap_or_else(|_| Err(zbus::Error::Failure("no answer within 10 s".into())))
        .map_err(unreachable)?;
    let sync = Sync1Proxy::new(&conn).await.map_err(unreachable)?;
    let failed = |e: zbus::Error| match e {
        zbus::Error::MethodError(name, Some(msg), _)
            if !name.as_str().starts_with("org.kioskcall.") =>
        {
            (3, format!("kiosk-sync is not reachable ({name}): {msg}"))
        }
        zbus::Error::MethodError(_, Some(msg), _) => (1, msg),
        other => (1, other.to_string()),
    };
    match cli.command {
        Cmd::Status => print_status(&sync.status().await.map_err(failed)?, cli.json),
        Cmd::Enroll { token } => {
            sync.enroll(&token).await.map_err(failed)?;
            println!("token given to kiosk-sync; it is enrolling (see `kioskctl status`)");
        }
        Cmd::Config => {
            let c = sync.desired_config().await.map_err(failed)?;
            if c.is_empty() {
                return Err((1, "no config in force yet".into()));
            }
            println!("{c}");
        }
        Cmd::Event { kind, body } => {
            let id = sync.report_event(&kind, &body).await.map_err(failed)?;
            println!("{id}");
        }
        Cmd::Wait { state, timeout } => {
            // kiosk-sync may not be on the bus yet: keep asking until the time-out.
            let wait = async {
                loop {
                    if let Ok(s) = sync.status().await {
                        if reached(&s, &state) {
                            return Ok::<_, (u8, String)>(s);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            match tokio::time::timeout(Duration::from_secs(timeout), wait).await {
                Ok(Ok(s)) => print_status(&s, cli.json),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err((4, format!("not {state} after {timeout} s"))),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kioskctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("kioskctl: {msg}");
            ExitCode::from(code)
        }
    }
}
