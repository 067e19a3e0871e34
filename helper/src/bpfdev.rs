//! Device access control for cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to
//! a container's cgroup, which the kernel runs at every open and mknod of a device node by
//! a process in that cgroup (or below it). The program allows the listed devices and
//! denies everything else, so even a node the container made itself (or found in a bind
//! mount) cannot be opened unless it is on the list. cgroup v1 does the same with the
//! `devices` controller's `devices.allow` files; v2 has no such controller.
//!
//! Approach: the raw bpf(2) syscall with a small hand-assembled instruction list, as runc
//! (`libcontainer/cgroups/devices/devicefilter`) and crun (`src/libcrun/ebpf.c`) do, rather
//! than a BPF crate (aya, libbpf-rs): the program is a dozen instructions per rule, needs no
//! maps, BTF, ELF loading or C toolchain, and the four bpf(2) commands it takes are wrapped
//! in `sys.rs` (the crate's only `unsafe`). This module is safe code: it builds the program,
//! loads it, attaches it, and replaces what was attached before.
//!
//! Kernel documentation: `Documentation/bpf/prog_cgroup_device.rst` (program type, context
//! struct `bpf_cgroup_dev_ctx`), bpf(2), and the v1 devices controller's rule syntax
//! (<https://docs.kernel.org/admin-guide/cgroup-v1/devices.html>), which [`DeviceRule`]
//! parses and prints.
//!
//! The program, for rules `c 1:3 rwm` and `c 136:* rwm`:
//! ```text
//!  0: r2 = *(u32 *)(r1 + 0)    access_type = (access << 16) | type
//!  1: r2 &= 0xffff             r2 = type (1 block, 2 char)
//!  2: r3 = *(u32 *)(r1 + 0)
//!  3: r3 >>= 16                r3 = access (1 mknod, 2 read, 4 write)
//!  4: r4 = *(u32 *)(r1 + 4)    r4 = major
//!  5: r5 = *(u32 *)(r1 + 8)    r5 = minor
//!  6: if r2 != 2 goto +4       rule 1: char device ...
//!  7: if r4 != 1 goto +3       ... major 1 ...
//!  8: if r5 != 3 goto +2       ... minor 3 (access "rwm" is everything: no test)
//!  9: r0 = 1                   allow
//! 10: exit
//! 11: if r2 != 2 goto +3       rule 2: char, major 136, any minor
//! 12: if r4 != 136 goto +2
//! 13: r0 = 1
//! 14: exit
//! 15: r0 = 0                   nothing matched: deny (open and mknod fail with EPERM)
//! 16: exit
//! ```
//! A rule with fewer access letters also tests `(access & allowed) == access`.

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::str::FromStr;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::sys::{self, BpfInsn};

/// linux/bpf.h `enum bpf_prog_type`: BPF_PROG_TYPE_CGROUP_DEVICE.
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// linux/bpf.h `enum bpf_attach_type`: BPF_CGROUP_DEVICE.
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may be attached to one cgroup and its ancestors; each must allow an
/// access. This is what systemd, runc and crun use, so a filter of ours coexists with one
/// an ancestor cgroup may carry.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// The license the kernel is told; the program calls no GPL-only helper.
const LICENSE: &CStr = c"Apache-2.0";
/// The name `bpftool prog` shows.
const PROG_NAME: &str = "warden_devices";
/// More programs than this on one container cgroup means someone else is attaching them.
const MAX_ATTACHED: usize = 64;

// Instruction encoding, linux/bpf_common.h and linux/bpf.h.
const BPF_LDX_MEM_W: u8 = 0x01 | 0x60; // class LDX, mode MEM, size W (u32) = 0x00
const BPF_ALU64_AND_K: u8 = 0x07 | 0x50; // class ALU64, op AND, source K (imm)
const BPF_ALU64_RSH_K: u8 = 0x07 | 0x70;
const BPF_ALU64_MOV_K: u8 = 0x07 | 0xb0;
const BPF_ALU64_MOV_X: u8 = 0x07 | 0xb0 | 0x08; // source X (register)
const BPF_JMP_JNE_K: u8 = 0x05 | 0x50;
const BPF_JMP_JNE_X: u8 = 0x05 | 0x50 | 0x08;
const BPF_JMP_EXIT: u8 = 0x05 | 0x90;

// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

/// Device type of a rule (`BPF_DEVCG_DEV_*`); `Any` is the v1 syntax's `a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    Block,
    Char,
    Any,
}

impl DeviceType {
    fn bpf_value(self) -> Option<i32> {
        match self {
            DeviceType::Block => Some(1),
            DeviceType::Char => Some(2),
            DeviceType::Any => None,
        }
    }
}

/// A set of accesses (`BPF_DEVCG_ACC_*` bits): `m`knod, `r`ead, `w`rite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    pub const MKNOD: Access = Access(1);
    pub const READ: Access = Access(2);
    pub const WRITE: Access = Access(4);
    pub const ALL: Access = Access(7);

    pub fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }
}

/// One allowed device (or set of devices), written and parsed in the syntax of cgroup v1's
/// `devices.allow`: `c 1:3 rwm`, `c 136:* rwm`, `b *:* m`, `a` (everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DeviceType,
    /// `None`: any major.
    pub major: Option<u32>,
    /// `None`: any minor.
    pub minor: Option<u32>,
    pub access: Access,
}

impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceType::Block => 'b',
            DeviceType::Char => 'c',
            DeviceType::Any => 'a',
        };
        let num = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        for (bit, letter) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.access.contains(bit) {
                access.push(letter);
            }
        }
        write!(f, "{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

impl FromStr for DeviceRule {
    type Err = Error;

    fn from_str(s: &str) -> Result<DeviceRule> {
        let bad = |why: &str| Error::Invalid(format!("device rule {s:?}: {why}"));
        let fields: Vec<&str> = s.split_whitespace().collect();
        let kind = match fields.first().copied() {
            Some("a") if fields.len() == 1 => {
                return Ok(DeviceRule {
                    kind: DeviceType::Any,
                    major: None,
                    minor: None,
                    access: Access::ALL,
                })
            }
            Some("a") => DeviceType::Any,
            Some("b") => DeviceType::Block,
            Some("c") => DeviceType::Char,
            _ => return Err(bad("the type is not a, b or c")),
        };
        let [_, numbers, letters] = fields[..] else {
            return Err(bad("expected TYPE MAJOR:MINOR ACCESS"));
        };
        let (major, minor) = numbers
            .split_once(':')
            .ok_or_else(|| bad("expected MAJOR:MINOR"))?;
        let num = |n: &str| -> Result<Option<u32>> {
            match n {
                "*" => Ok(None),
                // Majors have 12 bits, minors 20: both fit the signed immediate of a jump.
                _ => match n.parse::<u32>() {
                    Ok(v) if v <= i32::MAX as u32 => Ok(Some(v)),
                    _ => Err(bad("a device number is not a number or *")),
                },
            }
        };
        let mut access = Access(0);
        for letter in letters.chars() {
            access = access.union(match letter {
                'r' => Access::READ,
                'w' => Access::WRITE,
                'm' => Access::MKNOD,
                _ => return Err(bad("access letters are r, w and m")),
            });
        }
        if access.0 == 0 {
            return Err(bad("no access letters"));
        }
        Ok(DeviceRule {
            kind,
            major: num(major)?,
            minor: num(minor)?,
            access,
        })
    }
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The filter program for `allow` (see the module docs). Rules after one that matches
/// every device and access are left out: the verifier rejects unreachable instructions.
pub fn program(allow: &[DeviceRule]) -> Vec<BpfInsn> {
    let mut p = vec![
        insn(BPF_LDX_MEM_W, 2, 1, CTX_ACCESS_TYPE, 0),
        insn(BPF_ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(BPF_LDX_MEM_W, 3, 1, CTX_ACCESS_TYPE, 0),
        insn(BPF_ALU64_RSH_K, 3, 0, 0, 16),
        insn(BPF_LDX_MEM_W, 4, 1, CTX_MAJOR, 0),
        insn(BPF_LDX_MEM_W, 5, 1, CTX_MINOR, 0),
    ];
    for rule in allow {
        // The tests of this rule; each jumps past the rule's end when it fails. The offset
        // is filled in below, once the block's length is known.
        let mut block = Vec::new();
        if let Some(kind) = rule.kind.bpf_value() {
            block.push(insn(BPF_JMP_JNE_K, 2, 0, 0, kind));
        }
        if rule.access != Access::ALL {
            block.push(insn(BPF_ALU64_MOV_X, 1, 3, 0, 0));
            block.push(insn(BPF_ALU64_AND_K, 1, 0, 0, i32::from(rule.access.0)));
            block.push(insn(BPF_JMP_JNE_X, 1, 3, 0, 0));
        }
        if let Some(major) = rule.major {
            block.push(insn(BPF_JMP_JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(BPF_JMP_JNE_K, 5, 0, 0, minor as i32));
        }
        let matches_everything = block.is_empty();
        block.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 1));
        block.push(insn(BPF_JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == BPF_JMP_JNE_K || ins.code == BPF_JMP_JNE_X {
                ins.off = (len - 1 - i) as i16;
            }
        }
        p.extend(block);
        if matches_everything {
            return p;
        }
    }
    p.push(insn(BPF_ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(BPF_JMP_EXIT, 0, 0, 0, 0));
    p
}

fn io(op: String) -> impl FnOnce(Errno) -> Error {
    move |e| Error::Io {
        op,
        source: e.into(),
    }
}

fn open_cgroup(cgroup_dir: &Path) -> Result<File> {
    // O_RDONLY | O_CLOEXEC (std's default); a directory opens fine read-only.
    File::open(cgroup_dir).map_err(|source| Error::Io {
        op: format!("open cgroup {}", cgroup_dir.display()),
        source,
    })
}

/// Loads the filter for `allow` into the kernel. On a verifier error the message carries
/// the verifier's log.
pub fn load_device_filter(allow: &[DeviceRule]) -> Result<OwnedFd> {
    let insns = program(allow);
    let load = |log: Option<&mut [u8]>| {
        sys::bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, &insns, LICENSE, PROG_NAME, log)
    };
    match load(None) {
        Ok(fd) => Ok(fd),
        // Load again with the verifier's log, only to say why.
        Err(e @ (Errno::EINVAL | Errno::EACCES)) => {
            let mut log = vec![0u8; 64 << 10];
            let _ = load(Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(io(format!(
                "load the cgroup device program (bpf BPF_PROG_LOAD; verifier log: {})",
                text.trim()
            ))(e))
        }
        Err(e) => Err(io(
            "load the cgroup device program (bpf BPF_PROG_LOAD; needs CAP_BPF or root)".into(),
        )(e)),
    }
}

/// Allows exactly `allow` to the processes of the cgroup v2 directory `cgroup_dir` (and of
/// its descendants): loads the filter, attaches it (`BPF_F_ALLOW_MULTI`), then detaches
/// whatever device programs were attached to this cgroup before, so that calling it again
/// replaces the filter instead of stacking another. The filter is in force before this
/// returns, and stays attached until the cgroup is removed; the returned program fd need
/// not be kept (the cgroup holds its own reference).
pub fn attach_device_filter(cgroup_dir: &Path, allow: &[DeviceRule]) -> Result<OwnedFd> {
    let prog = load_device_filter(allow)?;
    let cgroup = open_cgroup(cgroup_dir)?;
    let before = attached(&cgroup, cgroup_dir)?;
    sys::bpf_prog_attach(
        cgroup.as_fd(),
        prog.as_fd(),
        BPF_CGROUP_DEVICE,
        BPF_F_ALLOW_MULTI,
    )
    .map_err(io(format!(
        "attach the device program to {} (bpf BPF_PROG_ATTACH)",
        cgroup_dir.display()
    )))?;
    for id in before {
        let old = match sys::bpf_prog_get_fd_by_id(id) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue, // detached and freed meanwhile
            Err(e) => {
                return Err(io(format!(
                    "find device program {id} (bpf BPF_PROG_GET_FD_BY_ID)"
                ))(e))
            }
        };
        match sys::bpf_prog_detach(cgroup.as_fd(), old.as_fd(), BPF_CGROUP_DEVICE) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(io(format!(
                    "detach the old device program {id} from {} (bpf BPF_PROG_DETACH)",
                    cgroup_dir.display()
                ))(e))
            }
        }
    }
    Ok(prog)
}

/// The ids of the device programs attached to `cgroup_dir` itself (not those it inherits).
pub fn device_filters(cgroup_dir: &Path) -> Result<Vec<u32>> {
    attached(&open_cgroup(cgroup_dir)?, cgroup_dir)
}

fn attached(cgroup: &File, cgroup_dir: &Path) -> Result<Vec<u32>> {
    sys::bpf_prog_query(cgroup.as_fd(), BPF_CGROUP_DEVICE, MAX_ATTACHED).map_err(io(format!(
        "list the device programs of {} (bpf BPF_PROG_QUERY)",
        cgroup_dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<DeviceRule> {
        list.iter().map(|r| r.parse().unwrap()).collect()
    }

    /// Runs `program` the way the kernel would, for the instructions it emits: the filter's
    /// meaning is tested here without root; the root tests load it into a real kernel.
    fn run(p: &[BpfInsn], kind: DeviceType, major: u32, minor: u32, access: Access) -> bool {
        let ctx = [
            (u64::from(access.0) << 16) | kind.bpf_value().unwrap() as u64,
            u64::from(major),
            u64::from(minor),
        ];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                BPF_LDX_MEM_W => {
                    assert_eq!(src, 1, "loads are from the context");
                    r[dst] = ctx[(i.off / 4) as usize];
                }
                BPF_ALU64_AND_K => r[dst] &= i.imm as i64 as u64,
                BPF_ALU64_RSH_K => r[dst] >>= i.imm,
                BPF_ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
                BPF_ALU64_MOV_X => r[dst] = r[src],
                BPF_JMP_JNE_K if r[dst] != i.imm as i64 as u64 => pc += i.off as usize,
                BPF_JMP_JNE_X if r[dst] != r[src] => pc += i.off as usize,
                BPF_JMP_JNE_K | BPF_JMP_JNE_X => {}
                BPF_JMP_EXIT => return r[0] == 1,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn rules_parse_and_print_in_v1_syntax() {
        for text in [
            "c 1:3 rwm",
            "c 136:* rwm",
            "b *:* m",
            "a *:* rw",
            "c 10:200 r",
        ] {
            assert_eq!(text.parse::<DeviceRule>().unwrap().to_string(), text);
        }
        assert_eq!("a".parse::<DeviceRule>().unwrap().to_string(), "a *:* rwm");
        assert_eq!(
            "c 1:3 mwr".parse::<DeviceRule>().unwrap().to_string(),
            "c 1:3 rwm"
        );
        for bad in [
            "",
            "x 1:3 r",
            "c 1 r",
            "c 1:3",
            "c 1:3 rx",
            "c a:3 r",
            "c 1:3 r extra",
        ] {
            let e = bad.parse::<DeviceRule>().unwrap_err().to_string();
            assert!(e.starts_with("device rule"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_program_allows_the_listed_devices_only() {
        let p = program(&rules(&["c 1:3 rwm", "c 136:* rwm", "b 7:* r", "c *:9 m"]));
        use DeviceType::{Block, Char};
        let rw = Access::READ.union(Access::WRITE);
        // Listed.
        assert!(run(&p, Char, 1, 3, rw));
        assert!(run(&p, Char, 1, 3, Access::MKNOD));
        assert!(run(&p, Char, 136, 0, rw));
        assert!(run(&p, Char, 136, 77, Access::ALL));
        assert!(run(&p, Block, 7, 0, Access::READ));
        assert!(run(&p, Char, 42, 9, Access::MKNOD));
        // Not listed: another minor, another type, more access than allowed.
        assert!(!run(&p, Char, 1, 4, rw));
        assert!(!run(&p, Block, 1, 3, rw));
        assert!(!run(&p, Block, 8, 0, Access::READ));
        assert!(!run(&p, Block, 7, 0, Access::WRITE));
        assert!(!run(&p, Block, 7, 0, Access::MKNOD));
        assert!(!run(&p, Char, 42, 9, Access::READ));
        assert!(!run(&p, Char, 137, 0, rw));
    }

    #[test]
    fn an_empty_list_denies_and_a_catch_all_ends_the_program() {
        let deny = program(&[]);
        assert_eq!(deny.len(), 8);
        assert!(!run(&deny, DeviceType::Char, 1, 3, Access::READ));
        let p = program(&rules(&["c 1:3 rwm", "a", "c 5:0 rwm"]));
        // Prologue, the first rule (3 tests, 2 to allow), the catch-all (2), and no more:
        // the third rule and the final deny could never run.
        assert_eq!(p.len(), 6 + 5 + 2);
        assert!(run(&p, DeviceType::Block, 8, 0, Access::ALL));
    }

    #[test]
    fn jumps_land_on_the_next_rule() {
        let p = program(&rules(&["c 1:3 rwm", "c 136:* rwm"]));
        // As drawn in the module docs.
        assert_eq!(p.len(), 17);
        let jumps: Vec<(usize, i16)> = p
            .iter()
            .enumerate()
            .filter(|(_, i)| i.code == BPF_JMP_JNE_K)
            .map(|(n, i)| (n, i.off))
            .collect();
        assert_eq!(jumps, [(6, 4), (7, 3), (8, 2), (11, 3), (12, 2)]);
        assert_eq!(p[15], insn(BPF_ALU64_MOV_K, 0, 0, 0, 0));
    }
}
