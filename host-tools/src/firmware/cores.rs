//! The Cortex-M cores the firmware runs on and the QEMU machine that emulates each: target
//! triple, `target-cpu`, machine name and the memory map the firmware links against.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};

/// A Cortex-M core and the QEMU machine that emulates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Core {
    /// Cortex-M0 (ARMv6-M, no FPU, no DSP) on the BBC micro:bit (nRF51, 256K flash, 16K RAM).
    M0,
    /// Cortex-M3 (ARMv7-M, no FPU) on the MPS2 AN385.
    M3,
    /// Cortex-M4F (ARMv7E-M, DSP, single-precision FPU) on the MPS2 AN386.
    M4,
    /// Cortex-M7 (ARMv7E-M, DSP, FPU) on the MPS2 AN500.
    M7,
    /// Cortex-M33 (ARMv8-M Mainline, DSP, FPU) on the MPS2 AN505, running Secure.
    M33,
}

impl Core {
    /// Every core, in the order tables list them.
    pub const ALL: [Core; 5] = [Core::M0, Core::M3, Core::M4, Core::M7, Core::M33];

    /// Short name (`m0`, `m3`, `m4`, `m7`, `m33`): CLI value and JSON key.
    pub fn name(self) -> &'static str {
        match self {
            Core::M0 => "m0",
            Core::M3 => "m3",
            Core::M4 => "m4",
            Core::M7 => "m7",
            Core::M33 => "m33",
        }
    }

    /// Rust target triple.
    pub fn target(self) -> &'static str {
        match self {
            Core::M0 => "thumbv6m-none-eabi",
            Core::M3 => "thumbv7m-none-eabi",
            Core::M4 | Core::M7 => "thumbv7em-none-eabihf",
            Core::M33 => "thumbv8m.main-none-eabihf",
        }
    }

    /// `-C target-cpu` the firmware is built with.
    pub fn target_cpu(self) -> &'static str {
        match self {
            Core::M0 => "cortex-m0",
            Core::M3 => "cortex-m3",
            Core::M4 => "cortex-m4",
            Core::M7 => "cortex-m7",
            Core::M33 => "cortex-m33",
        }
    }

    /// QEMU machine.
    pub fn machine(self) -> &'static str {
        match self {
            Core::M0 => "microbit",
            Core::M3 => "mps2-an385",
            Core::M4 => "mps2-an386",
            Core::M7 => "mps2-an500",
            Core::M33 => "mps2-an505",
        }
    }

    /// (flash origin, flash size, RAM origin, RAM size) of the default machine, as linked.
    pub fn memory(self) -> (u64, u64, u64, u64) {
        memory_of(self.machine())
    }

    /// Parses `m0|m3|m4|m7|m33`, a comma-separated list of them, or `all`.
    ///
    /// # Errors
    /// An unknown core name.
    pub fn parse_list(s: &str) -> Result<Vec<Core>> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Core::ALL.to_vec());
        }
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let c: Core = part.parse()?;
            if !v.contains(&c) {
                v.push(c);
            }
        }
        if v.is_empty() {
            bail!("no core given (expected m0, m3, m4, m7, m33 or all)");
        }
        Ok(v)
    }
}

impl fmt::Display for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Core {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Core::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| anyhow!("unknown core `{s}` (expected m0, m3, m4, m7, m33 or all)"))
    }
}

/// (flash origin, flash size, RAM origin, RAM size) of a QEMU machine, as the firmware links it.
pub fn memory_of(machine: &str) -> (u64, u64, u64, u64) {
    const K: u64 = 1024;
    match machine {
        "microbit" => (0, 256 * K, 0x2000_0000, 16 * K),
        "mps2-an505" => (0x1000_0000, 4096 * K, 0x3800_0000, 4096 * K),
        _ => (0, 4096 * K, 0x2000_0000, 4096 * K),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_parse() {
        assert_eq!(Core::parse_list("all").unwrap(), Core::ALL.to_vec());
        assert_eq!(
            Core::parse_list("m33, M0,m33").unwrap(),
            vec![Core::M33, Core::M0]
        );
        assert!(Core::parse_list("m5").is_err());
        assert!(Core::parse_list(" , ").is_err());
        for c in Core::ALL {
            assert_eq!(c.name().parse::<Core>().unwrap(), c);
        }
    }
}
