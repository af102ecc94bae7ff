# Shared by scripts/up and scripts/test: install what is missing on Debian 12, set up cargo.
# Sourced, not run.

KIOSKCALL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kioskcall-target}"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"; fi
}

# ensure_packages PKG...: installs the Debian packages that are not installed yet,
# with one apt-get update first, only when something is missing.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get: install them by hand"
    say "installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The Debian packages every build needs (C toolchain for the bundled SQLite and ring;
# libclang for the v4l crate's bindings; GStreamer's headers for gstreamer-rs).
BUILD_PACKAGES=(build-essential pkg-config ca-certificates curl libclang-dev
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev)

# What kiosk-media runs on: GStreamer 1.22 with plugins base/good/bad/ugly, libav (decoders)
# and libnice (ICE for webrtcbin).
MEDIA_PACKAGES=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice gstreamer1.0-tools)

# ensure_rust: cargo from rustup; Debian 12's own rustc is too old for this workspace.
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        say "installing the Rust toolchain with rustup"
        if command -v rustup >/dev/null 2>&1; then
            rustup default stable
        else
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
                || die "could not install Rust; install rustup by hand, then run this again"
        fi
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    local want have
    want="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$KIOSKCALL_ROOT/Cargo.toml")"
    have="$(rustc --version | awk '{print $2}')"
    if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
        command -v rustup >/dev/null 2>&1 && rustup update stable >/dev/null 2>&1 || true
        have="$(rustc --version | awk '{print $2}')"
        [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" = "$want" ] \
            || die "rustc $have is older than the workspace's rust-version $want"
    fi
    if command -v rustup >/dev/null 2>&1; then
        rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy
        rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    fi
}

ensure_nextest() {
    command -v cargo-nextest >/dev/null 2>&1 && return 0
    say "installing cargo-nextest"
    cargo install --locked cargo-nextest
}
