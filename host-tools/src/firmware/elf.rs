//! Flash and RAM of a firmware ELF: allocated sections classified by the machine's memory map,
//! and the bytes of the compiled-in model and test stream found by their symbols.

use std::path::Path;

use anyhow::{Context, Result};

use super::cores::memory_of;

/// Flash and RAM of an ELF, by section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ElfSizes {
    /// Loaded sections in flash (`.vector_table`, `.text`, `.rodata`, ...) plus the flash copy of
    /// `.data`.
    pub flash: u64,
    /// `.text` (and the vector table, and veneers): code.
    pub text: u64,
    /// Read-only data.
    pub rodata: u64,
    /// Initialised statics (in RAM, and their initial values in flash).
    pub data: u64,
    /// Zeroed and uninitialised statics.
    pub bss: u64,
    /// Flash bytes of the compiled-in model's statics (weights, biases, requantization
    /// constants, tables, normalization, the model value): symbols of `tinyvae_pipeline::model`.
    pub model: u64,
    /// Flash bytes of the compiled-in test stream (`tinyvae_pipeline::stream::BITS`).
    pub stream: u64,
}

impl ElfSizes {
    /// Statics in RAM (`.data + .bss + .uninit`).
    pub fn ram_static(&self) -> u64 {
        self.data + self.bss
    }
}

/// Reads the section sizes of a firmware ELF, classified by the machine's memory map, and the sizes
/// of the model's and the test stream's symbols (legacy-mangled names of the statics of
/// `tinyvae_pipeline::model` and `tinyvae_pipeline::stream`).
///
/// # Errors
/// Unreadable or malformed ELF.
pub fn elf_sizes(machine: &str, elf: &Path) -> Result<ElfSizes> {
    use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SectionKind, SymbolKind};
    let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let file =
        object::File::parse(&*bytes).with_context(|| format!("parsing {}", elf.display()))?;
    let (fo, fl, ro, rl) = memory_of(machine);
    let mut s = ElfSizes::default();
    for sec in file.sections() {
        let alloc = match sec.flags() {
            SectionFlags::Elf { sh_flags } => sh_flags & u64::from(object::elf::SHF_ALLOC) != 0,
            _ => false,
        };
        if !alloc || sec.size() == 0 {
            continue;
        }
        let a = sec.address();
        let size = sec.size();
        let name = sec.name().unwrap_or("");
        if (fo..fo + fl).contains(&a) {
            s.flash += size;
            if sec.kind() == SectionKind::Text || name == ".vector_table" {
                s.text += size;
            } else {
                s.rodata += size;
            }
        } else if (ro..ro + rl).contains(&a) {
            if sec.kind() == SectionKind::UninitializedData || name == ".bss" || name == ".uninit" {
                s.bss += size;
            } else {
                s.data += size;
                s.flash += size;
            }
        }
    }
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Data || !(fo..fo + fl).contains(&sym.address()) {
            continue;
        }
        let name = sym.name().unwrap_or("");
        if name.contains("16tinyvae_pipeline5model") {
            s.model += sym.size();
        } else if name.contains("16tinyvae_pipeline6stream") {
            s.stream += sym.size();
        }
    }
    Ok(s)
}
