//! The long run on the chip: [`tinyvae_pipeline::soak::soak`] over `$TINYVAE_SOAK_WINDOWS`
//! windows (default 100,000) of the compiled-in stream with periodic sensor faults, then one
//! line `soak windows=<n> samples=<n> alarms=<n> skipped=<n> flagged=<n> checksum=<hex>`. When
//! built with `$TINYVAE_SOAK_EXPECT` (the host reference's checksum, `host-ref --soak N`), exits
//! with status 0 only if the chip's checksum equals it, so the exit status alone is the parity
//! verdict: every report of every window bit-identical to the host's.
#![no_std]
#![no_main]

use tinyvae_fw as _;

/// Windows of the run.
const WINDOWS: u32 = match option_env!("TINYVAE_SOAK_WINDOWS") {
    Some(s) => parse(s.as_bytes(), 10),
    None => 100_000,
};

/// The expected checksum, if given.
const EXPECT: Option<u32> = match option_env!("TINYVAE_SOAK_EXPECT") {
    Some(s) => Some(parse(s.as_bytes(), 16)),
    None => None,
};

/// Parses digits of `radix` at compile time (a bad digit stops the build).
const fn parse(s: &[u8], radix: u32) -> u32 {
    let mut v = 0u32;
    let mut i = 0;
    while i < s.len() {
        let d = match s[i] {
            b @ b'0'..=b'9' => (b - b'0') as u32,
            b @ b'a'..=b'f' => (b - b'a') as u32 + 10,
            b @ b'A'..=b'F' => (b - b'A') as u32 + 10,
            _ => panic!("bad digit"),
        };
        assert!(d < radix, "bad digit");
        v = v * radix + d;
        i += 1;
    }
    v
}

#[cortex_m_rt::entry]
fn main() -> ! {
    match tinyvae_pipeline::soak::soak(WINDOWS) {
        Ok(s) => {
            defmt::info!(
                "soak windows={=u32} samples={=u64} alarms={=u32} skipped={=u32} flagged={=u32} checksum={=u32:08x}",
                s.windows.windows,
                s.samples,
                s.windows.alarms,
                s.windows.skipped,
                s.windows.flagged,
                s.checksum
            );
            match EXPECT {
                Some(e) if e != s.checksum => {
                    defmt::error!("checksum differs from the host's {=u32:08x}", e);
                    tinyvae_fw::exit::failure()
                }
                _ => tinyvae_fw::exit::success(),
            }
        }
        Err(e) => {
            defmt::error!("failed error={}", e);
            tinyvae_fw::exit::failure()
        }
    }
}
