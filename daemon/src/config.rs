//! The daemon's configuration: the YAML file given to `wardend --config FILE` (DESIGN.md
//! section 5), its defaults and its validation.
//!
//! Owns: every configuration key, its type, its default and the checks on its value. This is
//! the only module that reads YAML (serde_yaml is deprecated upstream, so swapping it stays a
//! one-file change). `config/linux.yml` is the documentation of each key; keep the two in step.
//!
//! Must not: touch the system. Loading a configuration creates no directory, binds no socket
//! and reads nothing but the file itself; the server and the container manager do that.
//!
//! Every key is optional. An unknown key or a bad value is an error whose message names the
//! key (`config /etc/warden.yml: server.pool_sizee: unknown field ...`), so the daemon can
//! stop at start with one clear line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    #[serde(deserialize_with = "null_as_default")]
    pub server: ServerConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub network: NetworkConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub user: UserConfig,
    #[serde(deserialize_with = "null_as_default")]
    pub logging: LoggingConfig,
}

/// `server:` the socket, the depot and per-container defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub unix_domain_path: PathBuf,
    /// Mode bits of the socket file (at most 0o777).
    #[serde(deserialize_with = "deserialize_mode")]
    pub unix_domain_permissions: u32,
    pub container_depot_path: PathBuf,
    pub container_rootfs_path: PathBuf,
    /// How long a container nobody references lives on; `None` = forever.
    #[serde(deserialize_with = "deserialize_optional_seconds")]
    pub container_grace_time: Option<Duration>,
    pub container_disk_size_mb: u64,
    /// Delay between SIGTERM and SIGKILL when a container is stopped or destroyed.
    #[serde(deserialize_with = "deserialize_seconds")]
    pub container_stop_grace_time: Duration,
    /// Bytes of output kept per stream (stdout, stderr) per job.
    pub job_output_limit: u64,
    /// Resource limits applied to every process spawned in a container.
    #[serde(deserialize_with = "null_as_default")]
    pub container_rlimits: BTreeMap<Rlimit, u64>,
}

/// `network:` the pool of /30 networks and the containers' outbound policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// First network of the pool; /30 aligned.
    #[serde(deserialize_with = "deserialize_ipv4")]
    pub pool_start_address: Ipv4Addr,
    /// Number of /30 networks (one per container).
    pub pool_size: u32,
    #[serde(deserialize_with = "null_as_default")]
    pub allow_networks: Vec<Cidr>,
    #[serde(deserialize_with = "null_as_default")]
    pub deny_networks: Vec<Cidr>,
    pub mtu: u32,
}

/// `user:` the pool of host uids that containers' unprivileged users run as.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    pub pool_start_uid: u32,
    pub pool_size: u32,
}

/// `logging:` where the daemon's log goes and how much of it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    pub level: LogLevel,
    /// Log file; `None` = standard error.
    pub file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            unix_domain_path: PathBuf::from("/tmp/warden.sock"),
            unix_domain_permissions: 0o755,
            container_depot_path: PathBuf::from("/var/lib/warden/containers"),
            container_rootfs_path: PathBuf::from("/var/lib/warden/rootfs"),
            container_grace_time: Some(Duration::from_secs(300)),
            container_disk_size_mb: 512,
            container_stop_grace_time: Duration::from_secs(2),
            job_output_limit: 10 * 1024 * 1024,
            container_rlimits: BTreeMap::new(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            pool_start_address: Ipv4Addr::new(10, 254, 0, 0),
            pool_size: 256,
            allow_networks: Vec::new(),
            deny_networks: Vec::new(),
            mtu: 1500,
        }
    }
}

impl Default for UserConfig {
    fn default() -> Self {
        UserConfig {
            pool_start_uid: 10000,
            pool_size: 256,
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: LogLevel::Info,
            file: None,
        }
    }
}

impl Config {
    /// Reads and validates the YAML file at `path`. An empty file (or one holding only
    /// comments) gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates YAML text; `origin` only names the source in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let parse_error = |e: serde_yaml::Error| ConfigError::Parse {
            path: origin.to_owned(),
            message: name_unknown_field(&e.to_string()),
        };
        // serde_yaml refuses an empty document for a struct; an empty file means "defaults".
        let document: serde_yaml::Value = serde_yaml::from_str(text).map_err(parse_error)?;
        let config = if document.is_null() {
            Config::default()
        } else {
            serde_yaml::from_str(text).map_err(parse_error)?
        };
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: origin.to_owned(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Checks the values that parse but make no sense (ranges, alignment, overflow).
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let s = &self.server;
        if s.unix_domain_path.as_os_str().is_empty() {
            return Err(("server.unix_domain_path", "must not be empty".into()));
        }
        if s.container_depot_path.as_os_str().is_empty() {
            return Err(("server.container_depot_path", "must not be empty".into()));
        }
        if s.container_rootfs_path.as_os_str().is_empty() {
            return Err(("server.container_rootfs_path", "must not be empty".into()));
        }
        if s.container_disk_size_mb == 0 {
            return Err(("server.container_disk_size_mb", "must be at least 1".into()));
        }

        let n = &self.network;
        if u32::from(n.pool_start_address) % 4 != 0 {
            return Err((
                "network.pool_start_address",
                format!(
                    "{} is not the first address of a /30 network (its last two bits must be zero)",
                    n.pool_start_address
                ),
            ));
        }
        if n.pool_size == 0 {
            return Err(("network.pool_size", "must be at least 1".into()));
        }
        let end = u64::from(u32::from(n.pool_start_address)) + 4 * u64::from(n.pool_size);
        if end > 1 << 32 {
            return Err((
                "network.pool_size",
                format!(
                    "{} networks of 4 addresses starting at {} run past 255.255.255.255",
                    n.pool_size, n.pool_start_address
                ),
            ));
        }
        if !(68..=65535).contains(&n.mtu) {
            return Err((
                "network.mtu",
                format!("{} is out of range (68 to 65535)", n.mtu),
            ));
        }

        let u = &self.user;
        if u.pool_start_uid == 0 {
            return Err(("user.pool_start_uid", "must not be 0 (root)".into()));
        }
        if u.pool_size == 0 {
            return Err(("user.pool_size", "must be at least 1".into()));
        }
        // uid 4294967295 is (uid_t)-1, "no uid" to the kernel: the pool must end before it.
        if u64::from(u.pool_start_uid) + u64::from(u.pool_size) > u64::from(u32::MAX) {
            return Err((
                "user.pool_size",
                format!(
                    "{} uids starting at {} run past the largest uid, 4294967294",
                    u.pool_size, u.pool_start_uid
                ),
            ));
        }
        Ok(())
    }
}

/// serde_yaml names the map that holds an unknown key (`server: unknown field `x`, ...`);
/// name the key itself, as for every other error (`server.x: unknown field `x`, ...`).
fn name_unknown_field(message: &str) -> String {
    const UNKNOWN: &str = "unknown field `";
    let Some(at) = message.find(UNKNOWN) else {
        return message.to_owned();
    };
    let rest = &message[at + UNKNOWN.len()..];
    let Some(field) = rest.split('`').next() else {
        return message.to_owned();
    };
    match message[..at].strip_suffix(": ") {
        Some(parent) if !parent.contains(' ') => format!("{parent}.{field}: {}", &message[at..]),
        None if at == 0 => format!("{field}: {message}"),
        _ => message.to_owned(),
    }
}

/// Why a configuration could not be loaded. Each message starts with `config <file>:`.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key or a value of the wrong type; serde_yaml's message starts
    /// with the key's path (`server.mtu: ...`) and ends with the line and column.
    Parse { path: PathBuf, message: String },
    /// A value of the right type that is out of range.
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(
                    f,
                    "config {}: cannot read the file: {source}",
                    path.display()
                )
            }
            ConfigError::Parse { path, message } => {
                write!(f, "config {}: {message}", path.display())
            }
            ConfigError::Invalid { path, key, message } => {
                write!(f, "config {}: {key}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `logging.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn to_level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// A key of `server.container_rlimits`: the name of `RLIMIT_<NAME>` in lower case
/// (setrlimit(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rlimit {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Sigpending,
    Stack,
}

impl Rlimit {
    pub const ALL: [Rlimit; 15] = [
        Rlimit::As,
        Rlimit::Core,
        Rlimit::Cpu,
        Rlimit::Data,
        Rlimit::Fsize,
        Rlimit::Locks,
        Rlimit::Memlock,
        Rlimit::Msgqueue,
        Rlimit::Nice,
        Rlimit::Nofile,
        Rlimit::Nproc,
        Rlimit::Rss,
        Rlimit::Rtprio,
        Rlimit::Sigpending,
        Rlimit::Stack,
    ];

    /// The configuration name: `nofile` for RLIMIT_NOFILE.
    pub fn name(self) -> &'static str {
        match self {
            Rlimit::As => "as",
            Rlimit::Core => "core",
            Rlimit::Cpu => "cpu",
            Rlimit::Data => "data",
            Rlimit::Fsize => "fsize",
            Rlimit::Locks => "locks",
            Rlimit::Memlock => "memlock",
            Rlimit::Msgqueue => "msgqueue",
            Rlimit::Nice => "nice",
            Rlimit::Nofile => "nofile",
            Rlimit::Nproc => "nproc",
            Rlimit::Rss => "rss",
            Rlimit::Rtprio => "rtprio",
            Rlimit::Sigpending => "sigpending",
            Rlimit::Stack => "stack",
        }
    }

    /// The resource to pass to setrlimit(2).
    pub fn resource(self) -> nix::sys::resource::Resource {
        use nix::sys::resource::Resource;
        match self {
            Rlimit::As => Resource::RLIMIT_AS,
            Rlimit::Core => Resource::RLIMIT_CORE,
            Rlimit::Cpu => Resource::RLIMIT_CPU,
            Rlimit::Data => Resource::RLIMIT_DATA,
            Rlimit::Fsize => Resource::RLIMIT_FSIZE,
            Rlimit::Locks => Resource::RLIMIT_LOCKS,
            Rlimit::Memlock => Resource::RLIMIT_MEMLOCK,
            Rlimit::Msgqueue => Resource::RLIMIT_MSGQUEUE,
            Rlimit::Nice => Resource::RLIMIT_NICE,
            Rlimit::Nofile => Resource::RLIMIT_NOFILE,
            Rlimit::Nproc => Resource::RLIMIT_NPROC,
            Rlimit::Rss => Resource::RLIMIT_RSS,
            Rlimit::Rtprio => Resource::RLIMIT_RTPRIO,
            Rlimit::Sigpending => Resource::RLIMIT_SIGPENDING,
            Rlimit::Stack => Resource::RLIMIT_STACK,
        }
    }
}

impl fmt::Display for Rlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Rlimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Rlimit, String> {
        Rlimit::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown resource limit {s:?}"))
    }
}

/// An IPv4 network `a.b.c.d/len`, as in `network.allow_networks` and `net out` rules.
///
/// The address is stored masked to the network (`10.1.2.3/16` is `10.1.0.0/16`), the way
/// iptables reads it. A bare address is a /32. The length may also be written as a netmask
/// (`10.0.0.0/255.0.0.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Cidr {
    /// `None` when `len` > 32. Host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Cidr> {
        if len > 32 {
            return None;
        }
        let addr = Ipv4Addr::from(u32::from(addr) & mask(len));
        Some(Cidr { addr, len })
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0 to 32.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// `255.255.255.252` for a /30.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.len))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.addr)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| {
            format!("{s:?} is not an IPv4 network (expected a.b.c.d or a.b.c.d/len)")
        })?;
        let len = match len {
            None => 32,
            // A netmask: contiguous ones, as in 255.255.255.0.
            Some(len) if len.contains('.') => len
                .parse::<Ipv4Addr>()
                .ok()
                .map(u32::from)
                .filter(|m| m.leading_ones() + m.trailing_zeros() == 32)
                .map(|m| m.leading_ones() as u8)
                .ok_or_else(|| {
                    format!(
                        "{s:?} has a bad netmask (expected contiguous ones, like 255.255.255.0)"
                    )
                })?,
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= 32 && !len.starts_with('+'))
                .ok_or_else(|| format!("{s:?} has a bad prefix length (expected 0 to 32)"))?,
        };
        Ok(Cidr::new(addr, len).expect("len checked above"))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        struct CidrVisitor;
        impl Visitor<'_> for CidrVisitor {
            type Value = Cidr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IPv4 network a.b.c.d/len or an address a.b.c.d")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cidr, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(CidrVisitor)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// The deserializers below validate inside a Visitor: serde_yaml adds the key's path (and
// line) only to errors raised while the value itself is being deserialized.

/// A section or list written as `key:` with nothing after it is the default, not an error.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// File mode bits, written the way chmod takes them: `0755`, `755`, `0o755` or `"0755"`
/// all mean 0o755. YAML 1.2 reads `0755` as a string and `755` as decimal 755, so the
/// digits are taken from the raw text and read as octal.
fn deserialize_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct ModeVisitor;
    impl Visitor<'_> for ModeVisitor {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("file permissions as octal digits, like 0755")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
            parse_mode(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            parse_mode(&v.to_string()).map_err(E::custom)
        }
    }
    // deserialize_str hands over the scalar's text as written, before YAML typing.
    d.deserialize_str(ModeVisitor)
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!(
            "{text:?} is not a file mode: expected octal digits 0-7, like 0755"
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{text} is not a file mode: the largest is 0777")),
    }
}

/// Like Ipv4Addr's own Deserialize, but the message quotes the value.
fn deserialize_ipv4<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    struct Ipv4Visitor;
    impl Visitor<'_> for Ipv4Visitor {
        type Value = Ipv4Addr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IPv4 address a.b.c.d")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Ipv4Addr, E> {
            v.parse()
                .map_err(|_| E::custom(format!("{v:?} is not an IPv4 address (expected a.b.c.d)")))
        }
    }
    d.deserialize_str(Ipv4Visitor)
}

/// A number of seconds, integer or fractional, at least zero.
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        struct SecondsVisitor;
        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(|v| Seconds(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("{v} seconds is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                Duration::try_from_secs_f64(v)
                    .map(Seconds)
                    .map_err(|_| E::custom(format!("{v} is not a valid number of seconds")))
            }
        }
        d.deserialize_any(SecondsVisitor)
    }
}

fn deserialize_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Seconds::deserialize(d)?.0)
}

/// Seconds, or `null` for "never".
fn deserialize_optional_seconds<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    Ok(Option::<Seconds>::deserialize(d)?.map(|s| s.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/test.yml"))
    }

    /// The error message of a bad file; panics if the file was accepted.
    fn error(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("accepted {text:?} as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_names(text: &str, key: &str) {
        let message = error(text);
        assert!(
            message.starts_with("config /etc/test.yml: ") && message.contains(key),
            "error for {text:?} does not name {key}: {message}"
        );
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.server.unix_domain_path, Path::new("/tmp/warden.sock"));
        assert_eq!(c.server.unix_domain_permissions, 0o755);
        assert_eq!(
            c.server.container_depot_path,
            Path::new("/var/lib/warden/containers")
        );
        assert_eq!(
            c.server.container_rootfs_path,
            Path::new("/var/lib/warden/rootfs")
        );
        assert_eq!(
            c.server.container_grace_time,
            Some(Duration::from_secs(300))
        );
        assert_eq!(c.server.container_disk_size_mb, 512);
        assert_eq!(c.server.container_stop_grace_time, Duration::from_secs(2));
        assert_eq!(c.server.job_output_limit, 10485760);
        assert!(c.server.container_rlimits.is_empty());
        assert_eq!(c.network.pool_start_address, Ipv4Addr::new(10, 254, 0, 0));
        assert_eq!(c.network.pool_size, 256);
        assert!(c.network.allow_networks.is_empty());
        assert!(c.network.deny_networks.is_empty());
        assert_eq!(c.network.mtu, 1500);
        assert_eq!(c.user.pool_start_uid, 10000);
        assert_eq!(c.user.pool_size, 256);
        assert_eq!(c.logging.level, LogLevel::Info);
        assert_eq!(c.logging.file, None);
    }

    #[test]
    fn empty_file_and_empty_sections_are_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("# nothing here\n").unwrap(), Config::default());
        assert_eq!(
            parse("server:\nnetwork:\nuser:\nlogging:\n").unwrap(),
            Config::default()
        );
        assert_eq!(parse("server: {}\n").unwrap(), Config::default());
    }

    #[test]
    fn full_file() {
        let c = parse(
            "server:
  unix_domain_path: /run/w.sock
  unix_domain_permissions: 0660
  container_depot_path: /srv/depot
  container_rootfs_path: /srv/rootfs
  container_grace_time: 1.5
  container_disk_size_mb: 64
  container_stop_grace_time: 0
  job_output_limit: 1024
  container_rlimits:
    nofile: 8192
    nproc: 512
    as: 4294967296
network:
  pool_start_address: 10.1.0.0
  pool_size: 16
  allow_networks: [10.0.0.0/8, 192.168.1.1]
  deny_networks:
    - 0.0.0.0/0
  mtu: 9000
user:
  pool_start_uid: 20000
  pool_size: 10
logging:
  level: debug
  file: /var/log/wardend.log
",
        )
        .unwrap();
        let s = &c.server;
        assert_eq!(s.unix_domain_path, Path::new("/run/w.sock"));
        assert_eq!(s.unix_domain_permissions, 0o660);
        assert_eq!(s.container_depot_path, Path::new("/srv/depot"));
        assert_eq!(s.container_rootfs_path, Path::new("/srv/rootfs"));
        assert_eq!(s.container_grace_time, Some(Duration::from_millis(1500)));
        assert_eq!(s.container_disk_size_mb, 64);
        assert_eq!(s.container_stop_grace_time, Duration::ZERO);
        assert_eq!(s.job_output_limit, 1024);
        assert_eq!(
            s.container_rlimits
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect::<Vec<_>>(),
            vec![
                (Rlimit::As, 4294967296),
                (Rlimit::Nofile, 8192),
                (Rlimit::Nproc, 512)
            ]
        );
        let n = &c.network;
        assert_eq!(n.pool_start_address, Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(n.pool_size, 16);
        assert_eq!(
            n.allow_networks,
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.168.1.1/32".parse().unwrap()
            ]
        );
        assert_eq!(
            n.deny_networks,
            vec![Cidr::new(Ipv4Addr::UNSPECIFIED, 0).unwrap()]
        );
        assert_eq!(n.mtu, 9000);
        assert_eq!(
            c.user,
            UserConfig {
                pool_start_uid: 20000,
                pool_size: 10
            }
        );
        assert_eq!(c.logging.level, LogLevel::Debug);
        assert_eq!(c.logging.level.to_level_filter(), log::LevelFilter::Debug);
        assert_eq!(
            c.logging.file.as_deref(),
            Some(Path::new("/var/log/wardend.log"))
        );
    }

    #[test]
    fn null_grace_time_means_never() {
        let c = parse("server:\n  container_grace_time: null\n").unwrap();
        assert_eq!(c.server.container_grace_time, None);
        let c = parse("server:\n  container_grace_time: ~\n").unwrap();
        assert_eq!(c.server.container_grace_time, None);
        let c = parse("server:\n  container_grace_time: 7\n").unwrap();
        assert_eq!(c.server.container_grace_time, Some(Duration::from_secs(7)));
    }

    #[test]
    fn octal_permissions() {
        for (text, mode) in [
            ("0660", 0o660),
            ("660", 0o660),
            ("0o660", 0o660),
            ("\"0660\"", 0o660),
            ("'600'", 0o600),
            ("0777", 0o777),
            ("0", 0),
            ("0755", 0o755),
        ] {
            let c = parse(&format!("server:\n  unix_domain_permissions: {text}\n"))
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.server.unix_domain_permissions, mode, "{text}");
        }
        for bad in ["0688", "9", "01000", "1777", "rw", "-1", "0x1ff", "null"] {
            assert_names(
                &format!("server:\n  unix_domain_permissions: {bad}\n"),
                "server.unix_domain_permissions",
            );
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        assert_names(
            "server:\n  pool_sizee: 3\n",
            "server.pool_sizee: unknown field `pool_sizee`",
        );
        assert_names("network:\n  mtuu: 3\n", "network.mtuu");
        assert_names("user:\n  uid: 3\n", "user.uid");
        assert_names("logging:\n  levle: info\n", "logging.levle");
        assert_names("servers:\n  x: 1\n", "servers");
        assert_names(
            "health_check_server:\n  port: 2345\n",
            "health_check_server",
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                "server:\n  unix_domain_path: ''\n",
                "server.unix_domain_path",
            ),
            (
                "server:\n  container_depot_path: ''\n",
                "server.container_depot_path",
            ),
            (
                "server:\n  container_rootfs_path: ''\n",
                "server.container_rootfs_path",
            ),
            (
                "server:\n  container_grace_time: soon\n",
                "server.container_grace_time",
            ),
            (
                "server:\n  container_grace_time: -1\n",
                "server.container_grace_time",
            ),
            (
                "server:\n  container_stop_grace_time: null\n",
                "server.container_stop_grace_time",
            ),
            (
                "server:\n  container_disk_size_mb: big\n",
                "server.container_disk_size_mb",
            ),
            (
                "server:\n  container_disk_size_mb: 0\n",
                "server.container_disk_size_mb",
            ),
            (
                "server:\n  job_output_limit: -5\n",
                "server.job_output_limit",
            ),
            (
                "server:\n  container_rlimits:\n    files: 10\n",
                "server.container_rlimits",
            ),
            (
                "server:\n  container_rlimits:\n    nofile: many\n",
                "server.container_rlimits.nofile",
            ),
            (
                "server:\n  container_rlimits: [nofile]\n",
                "server.container_rlimits",
            ),
            (
                "network:\n  pool_start_address: 10.254.0.1\n",
                "network.pool_start_address",
            ),
            (
                "network:\n  pool_start_address: 10.254.0\n",
                "network.pool_start_address",
            ),
            (
                "network:\n  pool_start_address: 300.0.0.0\n",
                "network.pool_start_address",
            ),
            ("network:\n  pool_size: 0\n", "network.pool_size"),
            ("network:\n  pool_size: -1\n", "network.pool_size"),
            (
                "network:\n  pool_start_address: 255.255.255.0\n  pool_size: 65\n",
                "network.pool_size",
            ),
            (
                "network:\n  allow_networks: [10.0.0.0/33]\n",
                "network.allow_networks",
            ),
            (
                "network:\n  allow_networks: [10.0.0/8]\n",
                "network.allow_networks",
            ),
            (
                "network:\n  deny_networks: [example.com]\n",
                "network.deny_networks",
            ),
            (
                "network:\n  deny_networks: 10.0.0.0/8\n",
                "network.deny_networks",
            ),
            ("network:\n  mtu: 67\n", "network.mtu"),
            ("network:\n  mtu: 65536\n", "network.mtu"),
            ("user:\n  pool_start_uid: 0\n", "user.pool_start_uid"),
            ("user:\n  pool_start_uid: -3\n", "user.pool_start_uid"),
            ("user:\n  pool_size: 0\n", "user.pool_size"),
            (
                "user:\n  pool_start_uid: 4294967200\n  pool_size: 200\n",
                "user.pool_size",
            ),
            ("logging:\n  level: loud\n", "logging.level"),
            ("logging:\n  file: [a]\n", "logging.file"),
            ("server: 3\n", "server"),
        ];
        for (text, key) in cases {
            assert_names(text, key);
        }
    }

    #[test]
    fn yaml_syntax_error_names_the_file() {
        let message = error("server:\n  - [\n");
        assert!(message.starts_with("config /etc/test.yml: "), "{message}");
    }

    #[test]
    fn load_reads_a_file_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.yml");
        std::fs::write(&path, "network:\n  mtu: 1400\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().network.mtu, 1400);
        let missing = dir.path().join("missing.yml");
        let message = Config::load(&missing).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("config {}: cannot read", missing.display())),
            "{message}"
        );
    }

    #[test]
    fn the_shipped_config_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/linux.yml");
        assert_eq!(Config::load(&path).unwrap(), Config::default());
    }

    #[test]
    fn cidr_parse_display_contains() {
        let c: Cidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(c.addr(), Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(c.prefix_len(), 16);
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 0, 0));
        assert!(c.contains(Ipv4Addr::new(10, 1, 255, 255)));
        assert!(!c.contains(Ipv4Addr::new(10, 2, 0, 0)));
        let host: Cidr = "192.168.0.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.168.0.7/32");
        assert!(host.contains(Ipv4Addr::new(192, 168, 0, 7)));
        assert!(!host.contains(Ipv4Addr::new(192, 168, 0, 6)));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(255, 255, 255, 255)));
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            "10.9.8.7/255.255.255.0"
                .parse::<Cidr>()
                .unwrap()
                .to_string(),
            "10.9.8.0/24"
        );
        assert_eq!("10.9.8.7/0.0.0.0".parse::<Cidr>().unwrap().prefix_len(), 0);
        assert!("10.9.8.7/255.0.255.0".parse::<Cidr>().is_err());
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"10.1.0.0/16\"");
        assert_eq!(Cidr::new(Ipv4Addr::LOCALHOST, 33), None);
    }

    #[test]
    fn rlimit_names_round_trip() {
        for r in Rlimit::ALL {
            assert_eq!(r.name().parse::<Rlimit>().unwrap(), r);
            let c = parse(&format!("server:\n  container_rlimits:\n    {r}: 1\n")).unwrap();
            assert_eq!(c.server.container_rlimits.get(&r), Some(&1));
        }
        assert_eq!(
            Rlimit::Nofile.resource(),
            nix::sys::resource::Resource::RLIMIT_NOFILE
        );
        assert!("rttime".parse::<Rlimit>().is_err());
    }
}
