//! kioskctl as a person runs it: usage errors and an unreachable bus give clear messages and
//! their documented exit codes. (With kiosk-sync running, kioskctl is exercised by the
//! workspace's end-to-end tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn kioskctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kioskctl"))
        .args(args)
        .env_remove("KIOSKCALL_DBUS_ADDRESS")
        .output()
        .unwrap()
}

#[test]
fn usage_and_unreachable_bus_have_their_exit_codes() {
    let out = kioskctl(&["--bus", "unix:path=/nonexistent/kioskcall-bus", "status"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("D-Bus"),
        "{out:?}"
    );
    let out = kioskctl(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = kioskctl(&[
        "--bus",
        "unix:path=/nonexistent/kioskcall-bus",
        "wait",
        "sleepy",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
