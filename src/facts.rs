//! Facts about the machine steward runs on: the `local` node's `node.*` template context.
//!
//! The OS (`/etc/os-release`) is read under `--root`, so it follows an image; the rest
//! describes the running machine whatever `--root` says: the host name, kernel and addresses
//! from the kernel, the CPU count from std, memory and virtualization from `/proc` and `/sys`.
//! Cheap and passive: a few small reads, no command, no thread. A source that cannot be read
//! gives an unknown fact (an empty string, or `None`), never an error.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use crate::model::Facts;

/// Facts of the local machine; `root` is where its file system is (`/` unless `--root`).
pub fn local(root: &Path) -> Facts {
    let host = Path::new("/");
    let hostname = read(host, "proc/sys/kernel/hostname")
        .map(|text| text.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let os_release = read(root, "etc/os-release")
        .or_else(|| read(root, "usr/lib/os-release"))
        .unwrap_or_default();
    let (os_family, os_release) = parse_os_release(&os_release);
    let (addresses, interfaces) = group_addresses(&interface_addresses());
    Facts {
        hostname,
        os_family,
        os_release,
        arch: std::env::consts::ARCH.to_string(),
        addresses,
        interfaces,
        cpus: std::thread::available_parallelism()
            .ok()
            .and_then(|n| u64::try_from(n.get()).ok()),
        memory: read(host, "proc/meminfo").and_then(|text| parse_mem_total(&text)),
        kernel: kernel(),
        virtualization: detect_virtual(host),
    }
}

/// A file under `base` as text, or `None` when it cannot be read.
fn read(base: &Path, path: &str) -> Option<String> {
    std::fs::read_to_string(base.join(path)).ok()
}

/// `(family, release)` from os-release text: the family is the first `ID_LIKE` entry (so
/// Ubuntu is `debian`), or `ID` itself.
fn parse_os_release(text: &str) -> (String, String) {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(|value| value.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let id = field("ID");
    let like = field("ID_LIKE");
    let family = like
        .split_whitespace()
        .next()
        .map_or(id.clone(), str::to_string);
    let family = if family.is_empty() {
        std::env::consts::OS.to_string()
    } else {
        family
    };
    (family, field("VERSION_ID"))
}

/// The kernel release from `uname`.
fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|uts| uts.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The addresses of the interfaces that are up, in the kernel's order.
fn interface_addresses() -> Vec<(String, IpAddr)> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter(|interface| {
            interface
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_UP)
        })
        .filter_map(|interface| {
            let address = interface.address?;
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(address.as_sockaddr_in6()?.ip())
            };
            Some((interface.interface_name, ip))
        })
        .collect()
}

/// `(addresses, interfaces)`: every reachable address once, IPv4 first, and each interface's
/// reachable addresses, IPv4 first; an interface without one is left out.
fn group_addresses(found: &[(String, IpAddr)]) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let ordered = |mut ips: Vec<IpAddr>| {
        ips.sort_by_key(IpAddr::is_ipv6);
        ips.iter().map(IpAddr::to_string).collect::<Vec<_>>()
    };
    let mut all: Vec<IpAddr> = Vec::new();
    let mut by_interface: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for (name, ip) in found {
        if !is_reachable(*ip) {
            continue;
        }
        if !all.contains(ip) {
            all.push(*ip);
        }
        let ips = by_interface.entry(name.clone()).or_default();
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    let interfaces = by_interface
        .into_iter()
        .map(|(name, ips)| (name, ordered(ips)))
        .collect();
    (ordered(all), interfaces)
}

/// Whether an address can name this machine from another one: not loopback, not link-local,
/// not unspecified.
fn is_reachable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unspecified()),
    }
}

/// `MemTotal` from `/proc/meminfo` text, in bytes.
fn parse_mem_total(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?;
    let mut words = line.split_whitespace();
    let amount: u64 = words.next()?.parse().ok()?;
    let unit = match words.next() {
        None => 1,
        Some("kB") => 1024,
        Some(_) => return None,
    };
    amount.checked_mul(unit)
}

/// Whether `/proc/cpuinfo` text has the `hypervisor` CPU flag (x86: the CPU runs under one).
fn has_hypervisor_flag(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|line| {
        line.split_once(':').is_some_and(|(key, flags)| {
            key.trim() == "flags" && flags.split_whitespace().any(|flag| flag == "hypervisor")
        })
    })
}

/// DMI vendor and product prefixes of virtual machines, as systemd-detect-virt names them.
const DMI_VENDORS: &[(&str, &str)] = &[
    ("KVM", "kvm"),
    ("OpenStack", "kvm"),
    ("KubeVirt", "kvm"),
    ("Amazon EC2", "amazon"),
    ("QEMU", "qemu"),
    ("VMware", "vmware"),
    ("VMW", "vmware"),
    ("innotek GmbH", "oracle"),
    ("VirtualBox", "oracle"),
    ("Oracle Corporation", "oracle"),
    ("Xen", "xen"),
    ("Bochs", "bochs"),
    ("Parallels", "parallels"),
    ("BHYVE", "bhyve"),
    ("Hyper-V", "microsoft"),
    ("Apple Virtualization", "apple"),
    ("Google Compute Engine", "google"),
];

/// What the machine under `host` (`/` but in tests) runs as: a container's kind (`docker`,
/// `podman`, `lxc`, ..., or `container`), a virtual machine's (`kvm`, `vmware`, ..., or `vm`),
/// `wsl`, or `physical`; empty when nothing could be read. The signals are
/// systemd-detect-virt's, containers first: `/.dockerenv`, `/run/.containerenv`,
/// `/run/systemd/container`, `container=` in `/proc/1/environ`, `/proc/self/cgroup`; then
/// WSL's kernel release, the DMI vendor and product, `/sys/hypervisor/type`, and the CPU's
/// `hypervisor` flag.
fn detect_virtual(host: &Path) -> String {
    if host.join(".dockerenv").exists() {
        return "docker".into();
    }
    if host.join("run/.containerenv").exists() {
        return "podman".into();
    }
    let named = |text: &str| {
        let name = text.trim();
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        plain.then(|| name.to_string())
    };
    if let Some(kind) = read(host, "run/systemd/container").and_then(|text| named(&text)) {
        return kind;
    }
    if let Some(kind) = std::fs::read(host.join("proc/1/environ"))
        .ok()
        .and_then(|environ| {
            environ.split(|&b| b == 0).find_map(|entry| {
                let value = entry.strip_prefix(b"container=")?;
                named(&String::from_utf8_lossy(value))
            })
        })
    {
        return kind;
    }
    if let Some(kind) = read(host, "proc/self/cgroup").and_then(|text| cgroup_container(&text)) {
        return kind.into();
    }
    let osrelease = read(host, "proc/sys/kernel/osrelease");
    if osrelease
        .as_deref()
        .is_some_and(|release| release.to_ascii_lowercase().contains("microsoft"))
    {
        return "wsl".into();
    }
    let dmi: Vec<String> = ["sys_vendor", "product_name", "board_vendor", "bios_vendor"]
        .iter()
        .filter_map(|name| read(host, &format!("sys/class/dmi/id/{name}")))
        .collect();
    if let Some(kind) = dmi.iter().find_map(|value| {
        DMI_VENDORS
            .iter()
            .find(|(prefix, _)| value.trim().starts_with(prefix))
            .map(|(_, kind)| *kind)
    }) {
        return kind.into();
    }
    if read(host, "sys/hypervisor/type").is_some_and(|kind| kind.trim() == "xen") {
        return "xen".into();
    }
    let cpuinfo = read(host, "proc/cpuinfo");
    if cpuinfo.as_deref().is_some_and(has_hypervisor_flag) {
        return "vm".into();
    }
    if cpuinfo.is_some() || !dmi.is_empty() {
        return "physical".into();
    }
    String::new()
}

/// A container runtime named by `/proc/self/cgroup` text (cgroup v1 paths; under cgroup v2
/// a container sees `0::/`, which says nothing).
fn cgroup_container(cgroup: &str) -> Option<&'static str> {
    let paths = cgroup.lines().filter_map(|line| line.splitn(3, ':').nth(2));
    let mut kind = None;
    for path in paths {
        if path.contains("/docker") || path.contains("docker-") {
            return Some("docker");
        }
        if path.contains("libpod") {
            return Some("podman");
        }
        if path.starts_with("/lxc") {
            kind = Some("lxc");
        } else if path.contains("kubepods") {
            kind = kind.or(Some("container"));
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(
            parse_os_release("ID=debian\nVERSION_ID=\"12\"\n"),
            ("debian".into(), "12".into())
        );
        assert_eq!(
            parse_os_release("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n").0,
            "debian"
        );
    }

    #[test]
    fn mem_total() {
        let meminfo = "MemTotal:       16318412 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(16_318_412 * 1024));
        assert_eq!(parse_mem_total("MemTotal: 2048\n"), Some(2048));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 1 MB\n"), None);
        assert_eq!(parse_mem_total("MemTotal: 18446744073709551615 kB\n"), None);
        assert_eq!(parse_mem_total(""), None);
    }

    #[test]
    fn hypervisor_flag() {
        let vm = "processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n";
        assert!(has_hypervisor_flag(vm));
        let metal = "processor\t: 0\nflags\t\t: fpu vme lahf_lm\nmodel name\t: hypervisor-ish\n";
        assert!(!has_hypervisor_flag(metal));
        assert!(!has_hypervisor_flag("flags: hypervisorx\n"));
        assert!(!has_hypervisor_flag(""));
    }

    /// A fake host under a temporary directory, with `files` written in it.
    fn host(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn detect(files: &[(&str, &[u8])]) -> String {
        detect_virtual(host(files).path())
    }

    #[test]
    fn virtualization() {
        let metal: &[u8] = b"flags\t: fpu vme\n";
        let vm: &[u8] = b"flags\t: fpu hypervisor\n";
        assert_eq!(detect(&[]), "");
        assert_eq!(detect(&[("proc/cpuinfo", metal)]), "physical");
        assert_eq!(detect(&[("proc/cpuinfo", vm)]), "vm");
        assert_eq!(
            detect(&[
                ("proc/cpuinfo", vm),
                ("sys/class/dmi/id/sys_vendor", b"QEMU\n"),
            ]),
            "qemu"
        );
        assert_eq!(
            detect(&[
                ("sys/class/dmi/id/sys_vendor", b"Dell Inc.\n"),
                ("sys/class/dmi/id/product_name", b"KVM\n"),
            ]),
            "kvm"
        );
        assert_eq!(
            detect(&[("sys/class/dmi/id/sys_vendor", b"Dell Inc.\n")]),
            "physical"
        );
        assert_eq!(detect(&[("sys/hypervisor/type", b"xen\n")]), "xen");
        assert_eq!(
            detect(&[(
                "proc/sys/kernel/osrelease",
                b"5.15.90.1-microsoft-standard-WSL2\n"
            )]),
            "wsl"
        );
        // Containers win over the machine they run on.
        assert_eq!(
            detect(&[(".dockerenv", b""), ("proc/cpuinfo", vm)]),
            "docker"
        );
        assert_eq!(detect(&[("run/.containerenv", b"")]), "podman");
        assert_eq!(
            detect(&[("run/systemd/container", b"systemd-nspawn\n")]),
            "systemd-nspawn"
        );
        assert_eq!(
            detect(&[("proc/1/environ", b"PATH=/bin\0container=lxc\0HOME=/\0")]),
            "lxc"
        );
        // A name that is not a plain word is no container kind.
        assert_eq!(
            detect(&[
                ("proc/1/environ", b"container=a b\0"),
                ("proc/cpuinfo", metal)
            ]),
            "physical"
        );
        assert_eq!(
            detect(&[("proc/self/cgroup", b"12:cpu:/docker/0123abcd\n")]),
            "docker"
        );
        assert_eq!(detect(&[("proc/self/cgroup", b"0::/\n")]), "");
    }

    #[test]
    fn cgroups() {
        assert_eq!(
            cgroup_container("1:name=systemd:/kubepods/besteffort/pod1/abc\n"),
            Some("container")
        );
        assert_eq!(cgroup_container("0::/lxc/web\n"), Some("lxc"));
        assert_eq!(
            cgroup_container("0::/machine.slice/libpod-0123.scope\n"),
            Some("podman")
        );
        assert_eq!(cgroup_container("0::/user.slice/session-1.scope\n"), None);
    }

    #[test]
    fn addresses_by_interface() {
        let found: Vec<(String, IpAddr)> = [
            ("lo", "127.0.0.1"),
            ("lo", "::1"),
            ("eth0", "fd00::2"),
            ("eth0", "fe80::2"),
            ("eth0", "10.0.0.2"),
            ("eth0", "10.0.0.2"),
            ("wg0", "10.9.0.1"),
            ("br0", "169.254.3.3"),
        ]
        .iter()
        .map(|(name, ip)| (name.to_string(), ip.parse().unwrap()))
        .collect();
        let (addresses, interfaces) = group_addresses(&found);
        assert_eq!(addresses, ["10.0.0.2", "10.9.0.1", "fd00::2"]);
        assert_eq!(
            interfaces,
            BTreeMap::from([
                (
                    "eth0".to_string(),
                    vec!["10.0.0.2".to_string(), "fd00::2".to_string()]
                ),
                ("wg0".to_string(), vec!["10.9.0.1".to_string()]),
            ])
        );
    }

    #[test]
    fn reachable_addresses() {
        for ip in [
            "127.0.0.1",
            "::1",
            "fe80::1",
            "169.254.1.1",
            "0.0.0.0",
            "::",
        ] {
            assert!(!is_reachable(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.0.2.1", "2001:db8::1", "fd00::1"] {
            assert!(is_reachable(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn this_machine() {
        let facts = local(Path::new("/nonexistent"));
        assert!(facts.cpus.is_some_and(|n| n >= 1));
        assert!(facts.addresses.iter().all(|a| a.parse::<IpAddr>().is_ok()));
        assert!(!facts.kernel.is_empty());
    }
}
