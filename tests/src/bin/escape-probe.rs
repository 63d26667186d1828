//! `escape-probe PROBE ARGS...`: one container-escape attempt, run inside a container by
//! `tests/tests/isolation.rs`. Prints `OK <detail>` and exits 0 when the attempt worked, or
//! `DENIED <step>: <errno>` and exits 1 when it was refused. It never changes the host: files it
//! opens for writing are closed unwritten, what it mounts is in the container's own namespace.
use std::{ffi::CString, io::Read, os::unix::ffi::OsStrExt};

fn denied(step: &str) -> ! {
    println!("DENIED {step}: {}", std::io::Error::last_os_error());
    std::process::exit(1)
}

fn refused(step: &str, why: &str) -> ! {
    println!("DENIED {step}: {why}");
    std::process::exit(1)
}

fn ok(detail: &str) -> ! {
    println!("OK {detail}");
    std::process::exit(0)
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

fn open(path: &str, flags: i32) -> i32 {
    // SAFETY: a valid C string.
    unsafe { libc::open(c(path).as_ptr(), flags | libc::O_CLOEXEC) }
}

fn mount(src: &str, dst: &str, fstype: &str, flags: libc::c_ulong) -> i32 {
    std::fs::create_dir_all(dst).ok();
    // SAFETY: valid C strings; the mount is in the container's own mount namespace.
    unsafe {
        libc::mount(
            c(src).as_ptr(),
            c(dst).as_ptr(),
            c(fstype).as_ptr(),
            flags,
            std::ptr::null(),
        )
    }
}

/// bpf(2) with a zeroed 128-byte attribute union whose first u32 is `first`.
fn bpf(cmd: libc::c_long, first: u32) -> (libc::c_long, [u32; 32]) {
    let mut attr = [0u32; 32];
    attr[0] = first;
    // SAFETY: the kernel reads/writes at most the size we pass.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(&attr)) };
    (r, attr)
}

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        // The "shocker" attack: a handle of the host filesystem's root inode, opened through a
        // file that is bind-mounted from the host (/etc/hosts).
        "open-by-handle" => {
            let mount_fd = open("/etc/hosts", libc::O_RDONLY);
            if mount_fd < 0 {
                denied("open /etc/hosts");
            }
            // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[8] }:
            // ext4's FILEID_INO32_GEN (1) for inode 2 (the root), generation 0.
            let mut fh = [0u8; 16];
            fh[0..4].copy_from_slice(&8u32.to_ne_bytes());
            fh[4..8].copy_from_slice(&1i32.to_ne_bytes());
            fh[8..12].copy_from_slice(&2u32.to_ne_bytes());
            // SAFETY: a well-formed file_handle.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_open_by_handle_at,
                    mount_fd,
                    fh.as_mut_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY,
                )
            };
            if fd < 0 {
                denied("open_by_handle_at");
            }
            let entries: Vec<String> = std::fs::read_dir(format!("/proc/self/fd/{fd}"))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            ok(&format!("host root reached: {} entries", entries.len()))
        }
        "bpf-prog-next-id" => {
            let (r, attr) = bpf(BPF_PROG_GET_NEXT_ID, 0);
            if r < 0 {
                denied("bpf(BPF_PROG_GET_NEXT_ID)");
            }
            ok(&format!("program id {}", attr[1]))
        }
        "bpf-link-fd" => {
            let (r, attr) = bpf(BPF_LINK_GET_NEXT_ID, 0);
            if r < 0 {
                denied("bpf(BPF_LINK_GET_NEXT_ID)");
            }
            let (fd, _) = bpf(BPF_LINK_GET_FD_BY_ID, attr[1]);
            if fd < 0 {
                denied("bpf(BPF_LINK_GET_FD_BY_ID)");
            }
            ok(&format!("link {} opened as fd {fd}", attr[1]))
        }
        "mount" => {
            let (src, fstype) = (arg(1), arg(2));
            if mount(&src, &format!("/tmp/probe-{fstype}"), &fstype, 0) != 0 {
                denied(&format!("mount -t {fstype}"));
            }
            ok(&format!("mounted {fstype}"))
        }
        "remount-sys-rw" => {
            // SAFETY: a remount of the container's own /sys.
            let r = unsafe {
                libc::mount(
                    c("sysfs").as_ptr(),
                    c("/sys").as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                denied("mount -o remount,rw /sys");
            }
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: valid path and buffer.
            if unsafe { libc::statvfs(c("/sys").as_ptr(), &mut st) } != 0 || st.f_flag & libc::ST_RDONLY != 0 {
                refused("remount", "/sys is still read-only");
            }
            ok("/sys is writable")
        }
        // Open a host block device (MAJOR MINOR, one the host's root can open): through a node
        // made with mknod, or an existing one in /dev.
        "open-block" => {
            let (maj, min): (u32, u32) = (arg(1).parse().unwrap_or(0), arg(2).parse().unwrap_or(0));
            let node = "/tmp/probe-blk";
            // SAFETY: valid path; makedev of plain numbers.
            let made = unsafe { libc::mknod(c(node).as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(maj, min)) };
            let path = if made == 0 {
                node.to_string()
            } else {
                let existing = std::fs::read_dir("/dev").into_iter().flatten().flatten().find(|e| {
                    use std::os::unix::fs::FileTypeExt;
                    e.file_type().map(|t| t.is_block_device()).unwrap_or(false)
                });
                match existing {
                    Some(e) => e.path().to_string_lossy().into_owned(),
                    None => denied("mknod of a block device (and /dev holds none)"),
                }
            };
            if open(&path, libc::O_RDONLY) < 0 {
                denied(&format!("open {path}"));
            }
            ok(&format!("opened the host's block device {maj}:{min} through {path}"))
        }
        // Open for writing, never write: that alone proves the kernel setting is writable.
        "open-write" => {
            let p = arg(1);
            if open(&p, libc::O_WRONLY) < 0 {
                denied(&format!("open {p} for writing"));
            }
            ok(&format!("{p} is writable"))
        }
        "keyctl" => {
            // KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3).
            // SAFETY: plain integer arguments.
            let r = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3i64, 0) };
            if r < 0 {
                denied("keyctl(KEYCTL_GET_KEYRING_ID)");
            }
            ok(&format!("session keyring {r}"))
        }
        "unshare-user" => {
            // SAFETY: affects this process only.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
                denied("unshare(CLONE_NEWUSER)");
            }
            ok("new user namespace")
        }
        "ptrace-pid1" => {
            // SAFETY: attach then detach; PID 1 is the container's own.
            if unsafe { libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) } != 0 {
                denied("ptrace(PTRACE_ATTACH, 1)");
            }
            let mut st = 0;
            // SAFETY: waiting for the stop we caused.
            unsafe {
                libc::waitpid(1, &mut st, libc::__WALL);
                libc::ptrace(libc::PTRACE_DETACH, 1, 0, 0);
            }
            ok("attached to PID 1")
        }
        // The file's content contains NEEDLE (host secrets, another container's record).
        "read-contains" => {
            let (p, needle) = (arg(1), arg(2));
            let mut s = Vec::new();
            match std::fs::File::open(&p).and_then(|mut f| f.read_to_end(&mut s)) {
                Ok(_) if s.windows(needle.len().max(1)).any(|w| w == needle.as_bytes()) => ok(&format!("{p} holds it")),
                Ok(_) => refused(&format!("read {p}"), "not the host's content"),
                Err(e) => refused(&format!("read {p}"), &e.to_string()),
            }
        }
        // A directory lists NAME (the host's /root).
        "lists" => {
            let (p, name) = (arg(1), arg(2));
            let found = match std::fs::read_dir(&p) {
                Ok(rd) => rd.flatten().any(|e| e.file_name().as_bytes() == name.as_bytes()),
                Err(e) => refused(&format!("list {p}"), &e.to_string()),
            };
            if found {
                ok(&format!("{p} lists {name}"))
            }
            refused(&format!("list {p}"), &format!("no {name}"))
        }
        // Any process visible here carries NEEDLE in its environment.
        "env-visible" => {
            let needle = arg(1);
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                if let Ok(env) = std::fs::read(e.path().join("environ"))
                    && env.split(|b| *b == 0).any(|v| v == needle.as_bytes())
                {
                    ok(&format!("in /proc/{}/environ", e.file_name().to_string_lossy()));
                }
            }
            refused("scan /proc/*/environ", "not found")
        }
        "create" => {
            let p = arg(1);
            if std::fs::write(&p, b"probe").is_err() {
                denied(&format!("create {p}"));
            }
            ok(&format!("created {p}"))
        }
        other => {
            eprintln!("unknown probe {other:?}");
            std::process::exit(2)
        }
    }
}
