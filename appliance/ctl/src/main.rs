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
    /// Calls: place a test call, end the call, or show the call and media state.
    Call {
        #[command(subcommand)]
        action: CallCmd,
    },
}

#[derive(Debug, Subcommand)]
enum CallCmd {
    /// Place a technician's test call to the organization's agents and wait until it is queued;
    /// with --follow, keep printing what happens until it ends.
    Test {
        #[arg(long)]
        follow: bool,
        /// Give up waiting for the cloud after this many seconds.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// End (or cancel) the current call.
    End,
    /// The call phase and id (kiosk-sync) and the media state (kiosk-media, if running).
    Status,
}

/// What kiosk-sync and kiosk-media say about the call.
async fn call_status(conn: &zbus::Connection, sync: &Sync1Proxy<'_>, json: bool) {
    let phase = sync.call_phase().await.unwrap_or_default();
    let call = sync.call_id().await.unwrap_or_default();
    let media = async {
        let m = kiosk_bus::Media1Proxy::builder(conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .ok()?;
        Some((
            m.call_state().await.ok()?,
            m.camera().await.unwrap_or_default(),
            m.encoder().await.unwrap_or_default(),
            m.stats().await.unwrap_or_default(),
        ))
    };
    let media = tokio::time::timeout(Duration::from_secs(2), media)
        .await
        .ok()
        .flatten();
    if json {
        let m = media.as_ref().map(|(state, camera, encoder, stats)| {
            serde_json::json!({
                "call_state": state, "camera": camera, "encoder": encoder,
                "stats": serde_json::from_str::<serde_json::Value>(stats).ok(),
            })
        });
        println!(
            "{}",
            serde_json::json!({ "phase": phase, "call": call, "media": m })
        );
        return;
    }
    println!("phase:    {phase}");
    println!("call:     {}", if call.is_empty() { "-" } else { &call });
    match media {
        Some((state, camera, encoder, stats)) => {
            println!("media:    {state}");
            println!("camera:   {camera}");
            println!("encoder:  {encoder}");
            if !stats.is_empty() {
                println!("stats:    {stats}");
            }
        }
        None => println!("media:    kiosk-media is not running"),
    }
}

/// Places a test call and reports its progress.
async fn test_call(sync: &Sync1Proxy<'_>, follow: bool, timeout: u64) -> Result<(), (u8, String)> {
    use futures_lite::StreamExt;
    let failed = |e: zbus::Error| match e {
        zbus::Error::MethodError(_, Some(msg), _) => (1, msg),
        other => (1, other.to_string()),
    };
    // Subscribe before placing, so no answer is missed.
    let mut queued = sync.receive_call_queued().await.map_err(failed)?;
    let mut accepted = sync.receive_call_accepted().await.map_err(failed)?;
    let mut ended = sync.receive_call_ended().await.map_err(failed)?;
    let request = sync.place_call("test", "").await.map_err(failed)?;
    println!("test call placed (request {request})");
    let mut call = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let waiting = tokio::time::sleep_until(deadline);
        tokio::select! {
            Some(q) = queued.next() => {
                if let Ok(a) = q.args() {
                    if a.request() == &request {
                        call = a.call().to_string();
                        println!("call {call} queued: the organization's available agents are ringing");
                        if !follow {
                            return Ok(());
                        }
                    }
                }
            }
            Some(a) = accepted.next() => {
                if let Ok(a) = a.args() {
                    if a.call() == &call {
                        println!("call {call} accepted by {}", a.agent());
                    }
                }
            }
            Some(e) = ended.next() => {
                if let Ok(e) = e.args() {
                    if e.request() == &request {
                        println!("call {} ended: {} (by {})", e.call(), e.reason(), e.by());
                        return if e.reason().starts_with("refused") { Err((1, format!("the call was {}", e.reason()))) } else { Ok(()) };
                    }
                }
            }
            _ = waiting, if call.is_empty() => {
                return Err((4, format!("no answer from the cloud after {timeout} s")));
            }
        }
    }
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
        Cmd::Call { action } => match action {
            CallCmd::Test { follow, timeout } => test_call(&sync, follow, timeout).await?,
            CallCmd::End => {
                let call = sync.call_id().await.map_err(failed)?;
                let phase = sync.call_phase().await.map_err(failed)?;
                if phase == "idle" {
                    return Err((1, "no call to end".into()));
                }
                sync.end_call(&call, "hangup").await.map_err(failed)?;
                println!(
                    "call {} ended",
                    if call.is_empty() { "(placing)" } else { &call }
                );
            }
            CallCmd::Status => call_status(&conn, &sync, cli.json).await,
        },
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
