//! Real OCI images (issue 16): images built here from Debian's static busybox, loaded as an
//! OCI layout (directory), as a `docker save` tar (Engine 25: the layout plus manifest.json,
//! read from stdin, zstd layer) and as a legacy `docker save` tar; the unpacked tree compared
//! with `umoci unpack`; the image config driving `run` (-P, links, env, workdir, user,
//! entrypoint); save/load round trips; rmi conflicts; and hostile archives refused with nothing
//! left in the store.
use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use linkrt_tests::{Client, HOST_IP, Host, Out, TempDir, eventually, exit_code, linkrt_bin, rand_suffix};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn hexof(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap()
}

/// `/bin/busybox`, which must be static (it runs inside images that have no libc).
fn busybox() -> Vec<u8> {
    let o = Command::new("ldd").arg("/bin/busybox").output().expect("ldd");
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        text.contains("not a dynamic executable") || text.contains("statically linked"),
        "/bin/busybox is not static ({text}): install busybox-static (`cargo xtask setup`)"
    );
    fs::read("/bin/busybox").expect("read /bin/busybox")
}

/// A tar built entry by entry; names are written raw (hostile ones included).
struct TarBuf {
    b: tar::Builder<Vec<u8>>,
}

impl TarBuf {
    fn new() -> Self {
        TarBuf {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(name: &str, ty: tar::EntryType, mode: u32, size: u64, uid: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(1_700_000_000);
        let raw = &mut h.as_old_mut().name;
        raw.fill(0);
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h
    }

    fn dir(mut self, name: &str, mode: u32, uid: u64) -> Self {
        let h = Self::header(name, tar::EntryType::Directory, mode, 0, uid);
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    fn file(mut self, name: &str, mode: u32, uid: u64, data: &[u8]) -> Self {
        let h = Self::header(name, tar::EntryType::Regular, mode, data.len() as u64, uid);
        self.b.append(&h, data).unwrap();
        self
    }

    fn link(mut self, name: &str, ty: tar::EntryType, target: &str) -> Self {
        let mut h = Self::header(name, ty, 0o777, 0, 0);
        let raw = &mut h.as_old_mut().linkname;
        raw.fill(0);
        raw[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.link(name, tar::EntryType::Symlink, target)
    }

    fn device(mut self, name: &str) -> Self {
        let mut h = Self::header(name, tar::EntryType::Char, 0o666, 0, 0);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }

    /// An entry that declares `size` bytes and has none (the archive ends).
    fn bomb(mut self, name: &str, size: u64) -> Vec<u8> {
        let h = Self::header(name, tar::EntryType::Regular, 0o644, size, 0);
        let mut v = self.b.into_inner().unwrap();
        // Before the end-of-archive blocks that `into_inner` wrote.
        v.truncate(v.len() - 1024);
        v.extend_from_slice(h.as_bytes());
        self.b = tar::Builder::new(Vec::new());
        v
    }

    fn done(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

const APPLETS: &[&str] = &[
    "sh", "env", "id", "pwd", "cat", "ls", "echo", "httpd", "sleep", "nc", "test",
];

/// Layer 1: busybox, users, a web root, a file and a directory that layer 2 deletes/replaces.
fn layer1() -> Vec<u8> {
    let mut t = TarBuf::new()
        .dir("bin/", 0o755, 0)
        .file("bin/busybox", 0o755, 0, &busybox())
        .link("bin/bb", tar::EntryType::Link, "bin/busybox");
    for a in APPLETS {
        t = t.symlink(&format!("bin/{a}"), "busybox");
    }
    t.dir("etc/", 0o755, 0)
        .file(
            "etc/passwd",
            0o644,
            0,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .file("etc/group", 0o644, 0, b"root:x:0:\napp:x:1000:\n")
        .dir("tmp/", 0o1777, 0)
        .dir("home/", 0o755, 0)
        .dir("home/app/", 0o750, 1000)
        .dir("www/", 0o755, 0)
        .file("www/index.html", 0o644, 0, b"hello from layer one\n")
        .dir("data/", 0o755, 1000)
        .file("data/gone.txt", 0o644, 1000, b"deleted by layer two\n")
        .file("data/kept.txt", 0o600, 1000, b"kept\n")
        .dir("data/old/", 0o755, 0)
        .file("data/old/a.txt", 0o644, 0, b"a\n")
        .dir("data/old/sub/", 0o755, 0)
        .file("data/old/sub/b.txt", 0o644, 0, b"b\n")
        .done()
}

/// Layer 2: a whiteout, an opaque directory, a replaced file.
fn layer2() -> Vec<u8> {
    TarBuf::new()
        .dir("data/", 0o755, 1000)
        .file("data/.wh.gone.txt", 0o644, 0, b"")
        .dir("data/old/", 0o755, 0)
        .file("data/old/.wh..wh..opq", 0o644, 0, b"")
        .file("data/old/new.txt", 0o644, 0, b"new\n")
        .file("www/index.html", 0o644, 0, b"hello from layer two\n")
        .done()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// An image: its config, and its layers (uncompressed tar, blob as stored, media type).
struct Img {
    config: Vec<u8>,
    layers: Vec<(Vec<u8>, Vec<u8>, &'static str)>,
}

impl Img {
    fn id(&self) -> String {
        sha(&self.config)
    }

    fn manifest(&self) -> Vec<u8> {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|(_, blob, mt)| json!({"mediaType": mt, "digest": sha(blob), "size": blob.len()}))
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.id(), "size": self.config.len()},
            "layers": layers,
        }))
        .unwrap()
    }
}

fn config_for(layers: &[&[u8]], cfg: Value) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    serde_json::to_vec(&json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": "amd64",
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn test_config() -> Value {
    json!({
        "Env": ["PATH=/bin", "GREETING=hello", "MODE=image"],
        "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"],
        "WorkingDir": "/data",
        "User": "app",
        "ExposedPorts": {"8080/tcp": {}, "5353/udp": {}},
    })
}

/// The test image: layer 1 gzip (or zstd), layer 2 plain.
fn test_image(zstd_layer: bool) -> Img {
    let (l1, l2) = (layer1(), layer2());
    let config = config_for(&[&l1, &l2], test_config());
    let b1 = if zstd_layer { zstd(&l1) } else { gzip(&l1) };
    let m1 = if zstd_layer {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    };
    Img {
        config,
        layers: vec![(l1, b1, m1), (l2.clone(), l2, "application/vnd.oci.image.layer.v1.tar")],
    }
}

/// The files of an OCI layout: (name, content).
fn layout_files(img: &Img, annotations: Value) -> Vec<(String, Vec<u8>)> {
    let m = img.manifest();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&m), "size": m.len(), "annotations": annotations}],
    });
    let mut v = vec![
        ("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json".into(), serde_json::to_vec(&index).unwrap()),
        (format!("blobs/sha256/{}", hexof(&sha(&m))), m),
        (format!("blobs/sha256/{}", hexof(&img.id())), img.config.clone()),
    ];
    for (_, blob, _) in &img.layers {
        v.push((format!("blobs/sha256/{}", hexof(&sha(blob))), blob.clone()));
    }
    v
}

fn write_dir(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (n, data) in files {
        let p = dir.join(n);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
    }
}

fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut t = TarBuf::new();
    for (n, data) in files {
        t = t.file(n, 0o644, 0, data);
    }
    t.done()
}

const TAG: &str = "linkrt-test/bbx:v1";
const ANN_NAME: &str = "io.containerd.image.name";

fn layout_annotations() -> Value {
    json!({"org.opencontainers.image.ref.name": "v1", ANN_NAME: format!("docker.io/{TAG}")})
}

/// `docker save` since Engine 25: the layout, with manifest.json beside it.
fn docker_save_tar(img: &Img, tag: &str) -> Vec<u8> {
    let mut files = layout_files(
        img,
        json!({ANN_NAME: format!("docker.io/{tag}"), "org.opencontainers.image.ref.name": "v1"}),
    );
    let manifest = json!([{
        "Config": format!("blobs/sha256/{}", hexof(&img.id())),
        "RepoTags": [tag],
        "Layers": img.layers.iter().map(|(_, b, _)| format!("blobs/sha256/{}", hexof(&sha(b)))).collect::<Vec<_>>(),
    }]);
    files.push(("manifest.json".into(), serde_json::to_vec(&manifest).unwrap()));
    tar_of(&files)
}

/// `docker save` before Engine 25: `<id>.json`, `<layer>/layer.tar`, manifest.json; the second
/// layer's file is a symlink to a copy elsewhere (as docker does for shared layers).
fn legacy_tar(img: &Img, tag: &str) -> Vec<u8> {
    let (l1, l2) = (&img.layers[0].0, &img.layers[1].0);
    let (d1, d2) = (hexof(&sha(l1)).to_string(), hexof(&sha(l2)).to_string());
    let manifest = json!([{
        "Config": format!("{}.json", hexof(&img.id())),
        "RepoTags": [tag],
        "Layers": [format!("{d1}/layer.tar"), format!("{d2}/layer.tar")],
    }]);
    TarBuf::new()
        .file(&format!("{}.json", hexof(&img.id())), 0o644, 0, &img.config)
        .dir(&format!("{d1}/"), 0o755, 0)
        .file(&format!("{d1}/layer.tar"), 0o644, 0, l1)
        .dir("shared/", 0o755, 0)
        .file("shared/layer.tar", 0o644, 0, l2)
        .dir(&format!("{d2}/"), 0o755, 0)
        .symlink(&format!("{d2}/layer.tar"), "../shared/layer.tar")
        .file("manifest.json", 0o644, 0, &serde_json::to_vec(&manifest).unwrap())
        .file("repositories", 0o644, 0, br#"{"linkrt-test/legacy":{"v1":"x"}}"#)
        .done()
}

/// `linkrt ARGS < input` (image commands need no network namespace).
fn linkrt_stdin(h: &Host, args: &[&str], input: &Path) -> Out {
    let o = Command::new(linkrt_bin())
        .args(args)
        .env("LINKRT_ROOT", &h.t.cfg.root)
        .env("LINKRT_RUN_ROOT", &h.t.cfg.run_root)
        .env("LINKRT_BPFFS", &h.t.cfg.bpffs)
        .stdin(Stdio::from(fs::File::open(input).unwrap()))
        .output()
        .expect("spawn linkrt");
    Out {
        code: exit_code(&o.status),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Every entry of a tree: type, mode, owner, size and content (or link target).
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = md.file_type();
            let what = if ft.is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                "dir".into()
            } else if ft.is_file() {
                format!("file {} {}", md.len(), sha(&fs::read(&p).unwrap()))
            } else {
                format!("other {:o}", md.mode())
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                md.permissions().mode() & 0o7777
            };
            out.insert(rel, format!("{what} mode={mode:o} uid={} gid={}", md.uid(), md.gid()));
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The image's layers mounted read-only as one overlay (as a container's lower layers).
struct Merged {
    dir: TempDir,
}

impl Merged {
    fn new(h: &Host, image: &str) -> Merged {
        let lower = h.ok(&["image", "inspect", "-f", "{{.GraphDriver.Data.LowerDir}}", image]);
        let dir = TempDir::new("linkrt-merged");
        let opts = if lower.contains(':') {
            format!("lowerdir={lower}")
        } else {
            // A single layer: pad it with an empty one (overlayfs wants two lowers, or an upper).
            let empty = dir.path.join("empty");
            fs::create_dir(&empty).unwrap();
            format!("lowerdir={lower}:{}", empty.display())
        };
        let mnt = dir.path.join("mnt");
        fs::create_dir(&mnt).unwrap();
        nix::mount::mount(
            Some("overlay"),
            &mnt,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {opts}: {e}"));
        Merged { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path.join("mnt")
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `umoci unpack` of the layout's `v1`: the reference tree.
fn umoci_tree(layout: &Path) -> BTreeMap<String, String> {
    let bundle = TempDir::new("linkrt-umoci");
    let b = bundle.path.join("b");
    let o = Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:v1", layout.display())])
        .arg(&b)
        .output()
        .expect("umoci (Debian package umoci, installed by `cargo xtask setup`)");
    assert!(
        o.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    tree(&b.join("rootfs"))
}

fn store_dir(h: &Host) -> PathBuf {
    h.t.cfg.root.join("images")
}

/// What the store holds besides its database: blobs, diffs, stages.
fn store_contents(h: &Host) -> Vec<String> {
    let mut v = Vec::new();
    for sub in ["blobs/sha256", "diffs", "tmp"] {
        if let Ok(rd) = fs::read_dir(store_dir(h).join(sub)) {
            v.extend(rd.map(|e| format!("{sub}/{}", e.unwrap().file_name().to_string_lossy())));
        }
    }
    v.sort();
    v
}

fn assert_same_tree(h: &Host, image: &str, want: &BTreeMap<String, String>) {
    let m = Merged::new(h, image);
    let got = tree(&m.path());
    if &got != want {
        let diff: Vec<String> = got
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(v))
            .map(|(k, v)| format!("linkrt {k}: {v} / umoci: {:?}", want.get(k)))
            .chain(
                want.keys()
                    .filter(|k| !got.contains_key(*k))
                    .map(|k| format!("missing in linkrt: {k}")),
            )
            .collect();
        panic!("unpacked tree differs from umoci's:\n{}", diff.join("\n"));
    }
}

#[test]
fn load_layout_docker_save_and_legacy_tars_like_umoci() {
    let h = Host::new();
    let work = TempDir::new("linkrt-img");
    let img = test_image(false);
    let layout = work.path.join("layout");
    write_dir(&layout, &layout_files(&img, layout_annotations()));
    let reference = umoci_tree(&layout);
    assert!(!reference.contains_key("data/gone.txt") && reference.contains_key("data/old/new.txt"));
    assert!(!reference.contains_key("data/old/a.txt") && !reference.contains_key("data/old/sub"));

    // 1. The layout directory.
    let out = h.ok(&["load", "-i", layout.to_str().unwrap()]);
    assert_eq!(out, format!("Loaded image: {TAG}"));
    assert_eq!(h.ok(&["image", "inspect", "-f", "{{.Id}}", TAG]), img.id());
    let ls = h.ok(&["images"]);
    // Docker's layout (its tabwriter: cells at least 10 wide, padding 3): TAG is 10 wide
    // (no tag here is longer than 7), IMAGE ID 15, and every row starts its cells where the
    // header does.
    let head = ls.lines().next().unwrap();
    let at = |h: &str| head.find(h).unwrap_or_else(|| panic!("{h} missing: {ls}"));
    let offsets = [0, at("   TAG") + 3, at("IMAGE ID"), at("CREATED"), at("SIZE")];
    assert_eq!(&head[offsets[1]..offsets[3]], "TAG       IMAGE ID       ", "{ls}");
    assert!(head[..offsets[1]].starts_with("REPOSITORY   "), "{ls}");
    for l in ls.lines() {
        for &o in &offsets[1..] {
            assert!(
                l.as_bytes()[o - 1] == b' ' && l.as_bytes()[o] != b' ',
                "a cell not at its column ({o}):\n{ls}"
            );
        }
    }
    let row = ls
        .lines()
        .find(|l| l.starts_with("linkrt-test/bbx"))
        .unwrap_or_else(|| panic!("{ls}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "v1");
    assert_eq!(cols[2], &hexof(&img.id())[..12]);
    assert!(row.contains(" ago") && row.ends_with("MB"), "{row}");
    assert!(
        ls.lines().any(|l| l.starts_with("redis ")),
        "built-ins stay listed: {ls}"
    );
    assert_same_tree(&h, TAG, &reference);

    // 2. The same image as `docker save` writes it (zstd first layer), from stdin, into an
    // empty store.
    assert!(h.ok(&["rmi", TAG]).contains(&format!("Deleted: {}", img.id())));
    assert_eq!(store_contents(&h), Vec::<String>::new(), "rmi leaves nothing");
    let zimg = test_image(true);
    assert_eq!(zimg.id(), img.id(), "compression changes the manifest, not the image");
    let tarfile = work.path.join("save.tar");
    fs::write(&tarfile, docker_save_tar(&zimg, TAG)).unwrap();
    let o = linkrt_stdin(&h, &["load"], &tarfile);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout.trim(), format!("Loaded image: {TAG}"));
    assert_eq!(h.ok(&["image", "inspect", "-f", "{{.Id}}", TAG]), img.id());
    assert_same_tree(&h, TAG, &reference);
    h.ok(&["rmi", TAG]);

    // 3. The legacy `docker save` form.
    let legacy = work.path.join("legacy.tar");
    fs::write(&legacy, legacy_tar(&img, "linkrt-test/legacy:v1")).unwrap();
    assert_eq!(
        h.ok(&["load", "-i", legacy.to_str().unwrap()]),
        "Loaded image: linkrt-test/legacy:v1"
    );
    assert_eq!(
        h.ok(&["image", "inspect", "-f", "{{.Id}}", "linkrt-test/legacy:v1"]),
        img.id()
    );
    assert_same_tree(&h, "linkrt-test/legacy:v1", &reference);

    // 4. save, then load: the same IDs and layers.
    let layers = h.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .RootFS.Layers}}",
        "linkrt-test/legacy:v1",
    ]);
    let saved = work.path.join("out.tar");
    h.ok(&["save", "-o", saved.to_str().unwrap(), "linkrt-test/legacy:v1"]);
    check_docker_loadable(&saved);
    h.ok(&["rmi", "linkrt-test/legacy:v1"]);
    assert_eq!(store_contents(&h), Vec::<String>::new());
    assert_eq!(
        h.ok(&["load", "-i", saved.to_str().unwrap()]),
        "Loaded image: linkrt-test/legacy:v1"
    );
    assert_eq!(
        h.ok(&["image", "inspect", "-f", "{{.Id}}", "linkrt-test/legacy:v1"]),
        img.id()
    );
    assert_eq!(
        h.ok(&[
            "image",
            "inspect",
            "-f",
            "{{json .RootFS.Layers}}",
            "linkrt-test/legacy:v1"
        ]),
        layers
    );
    assert_same_tree(&h, "linkrt-test/legacy:v1", &reference);
    // And the saved tar, re-saved, is byte for byte the same archive.
    let again = work.path.join("again.tar");
    h.ok(&["save", "-o", again.to_str().unwrap(), "linkrt-test/legacy:v1"]);
    assert_eq!(fs::read(&saved).unwrap(), fs::read(&again).unwrap());
}

/// What `docker load` (moby's tarexport) needs: manifest.json whose Config and Layers name
/// files of the archive, the config's diff IDs matching the layers; plus the OCI index.
fn check_docker_loadable(tarfile: &Path) {
    let mut files = BTreeMap::new();
    let mut ar = tar::Archive::new(fs::File::open(tarfile).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut v).unwrap();
        files.insert(name, v);
    }
    for n in ["oci-layout", "index.json", "manifest.json"] {
        assert!(files.contains_key(n), "{n} missing from the saved archive");
    }
    let m: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let e = &m[0];
    let config: Value = serde_json::from_slice(&files[e["Config"].as_str().unwrap()]).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    for (l, d) in e["Layers"].as_array().unwrap().iter().zip(diff_ids) {
        let blob = &files[l.as_str().unwrap()];
        assert_eq!(format!("blobs/sha256/{}", hexof(&sha(blob))), l.as_str().unwrap());
        let mut raw = Vec::new();
        if blob.starts_with(&[0x1f, 0x8b]) {
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut raw).unwrap();
        } else {
            raw = blob.clone();
        }
        assert_eq!(sha(&raw), d.as_str().unwrap());
    }
    assert_eq!(e["RepoTags"][0], "linkrt-test/legacy:v1");
    let idx: Value = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(
        idx["manifests"][0]["annotations"][ANN_NAME],
        "docker.io/linkrt-test/legacy:v1"
    );
}

#[test]
fn image_config_drives_the_container() {
    let h = Host::new();
    let client = Client::new(&h);
    let work = TempDir::new("linkrt-img");
    let img = test_image(false);
    let layout = work.path.join("layout");
    write_dir(&layout, &layout_files(&img, layout_annotations()));
    h.ok(&["load", "-i", layout.to_str().unwrap()]);

    // Env, WorkingDir, User, Cmd from the image.
    let script = "echo $GREETING $MODE; pwd; id -u; echo $HOME; ls /data; ls /data/old";
    let out = h.ok(&["run", "--rm", TAG, "sh", "-c", script]);
    assert_eq!(out, "hello image\n/data\n1000\n/home/app\nkept.txt\nold\nnew.txt");
    // Then -e, -w, -u.
    let out = h.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=bye",
        "-w",
        "/tmp",
        "-u",
        "0",
        TAG,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(out, "bye image\n/tmp\n0\n/root\nkept.txt\nold\nnew.txt");
    // --entrypoint replaces the entrypoint and drops the image's command.
    assert_eq!(h.ok(&["run", "--rm", "--entrypoint", "/bin/echo", TAG, "hi"]), "hi");
    assert_eq!(h.ok(&["run", "--rm", "--entrypoint", "pwd", TAG]), "/data");

    // An image with an Entrypoint: the arguments replace its Cmd only; --entrypoint "" clears it.
    let l1 = layer1();
    let ep = Img {
        config: config_for(
            &[&l1],
            json!({"Entrypoint": ["/bin/echo", "ep"], "Cmd": ["default"], "Env": ["PATH=/bin"]}),
        ),
        layers: vec![(l1.clone(), gzip(&l1), "application/vnd.oci.image.layer.v1.tar+gzip")],
    };
    let epdir = work.path.join("ep");
    write_dir(
        &epdir,
        &layout_files(&ep, json!({ANN_NAME: "docker.io/linkrt-test/ep:v1"})),
    );
    h.ok(&["load", "-i", epdir.to_str().unwrap()]);
    assert_eq!(h.ok(&["run", "--rm", "linkrt-test/ep:v1"]), "ep default");
    assert_eq!(h.ok(&["run", "--rm", "linkrt-test/ep:v1", "x", "y"]), "ep x y");
    assert_eq!(
        h.ok(&["run", "--rm", "--entrypoint", "", "linkrt-test/ep:v1", "echo", "z"]),
        "z"
    );
    h.ok(&["create", "--name", "epc", "linkrt-test/ep:v1", "arg"]);
    assert_eq!(h.inspect("epc", "{{json .Config.Entrypoint}}"), r#"["/bin/echo","ep"]"#);
    assert_eq!(h.inspect("epc", "{{json .Config.Cmd}}"), r#"["arg"]"#);
    assert_eq!(h.inspect("epc", "{{json .Args}}"), r#"["ep","arg"]"#);
    assert_eq!(h.inspect("epc", "{{.Path}}"), "/bin/echo");
    h.ok(&["rm", "epc"]);
    h.ok(&["rmi", "linkrt-test/ep:v1"]);

    // -P publishes the image's exposed ports merged with --expose; its Cmd serves the web root.
    let id = h.ok(&["run", "-d", "-P", "--expose", "7000", "--name", "web", TAG]);
    let ports = h.ok(&["port", "web"]);
    assert!(ports.lines().any(|l| l.starts_with("7000/tcp -> 0.0.0.0:")), "{ports}");
    let tcp = ports
        .lines()
        .find_map(|l| l.strip_prefix("8080/tcp -> 0.0.0.0:"))
        .unwrap_or_else(|| panic!("8080/tcp not published: {ports}"));
    assert!(ports.lines().any(|l| l.starts_with("5353/udp -> 0.0.0.0:")), "{ports}");
    let body = eventually(20, || client.curl(&format!("http://{HOST_IP}:{tcp}/")));
    assert_eq!(body, "hello from layer two\n");
    let ps = h.ok(&["ps"]);
    assert!(
        ps.contains("->8080/tcp") && ps.contains("->5353/udp") && ps.contains("->7000/tcp"),
        "{ps}"
    );
    assert_eq!(h.inspect("web", "{{.Config.Image}}"), TAG);
    assert_eq!(h.inspect("web", "{{.Image}}"), img.id());
    assert_eq!(
        h.inspect("web", "{{.Config.ExposedPorts}}"),
        "map[5353/udp:map[] 7000/tcp:map[] 8080/tcp:map[]]"
    );
    assert_eq!(h.inspect("web", "{{.Config.User}}"), "app");
    assert_eq!(h.inspect("web", "{{.Config.WorkingDir}}"), "/data");
    assert_eq!(
        h.inspect("web", "{{json .Config.Cmd}}"),
        r#"["httpd","-f","-p","8080","-h","/www"]"#
    );

    // A recipient linked to it gets the link variables of the image's ports.
    let ip = h.ip_of("web");
    let env = h.ok(&["run", "--rm", "--link", "web:db", TAG, "env"]);
    for want in [
        // Docker's order: tcp first, then by port, so the --expose'd port is the link's own.
        format!("DB_PORT=tcp://{ip}:7000"),
        format!("DB_PORT_7000_TCP=tcp://{ip}:7000"),
        format!("DB_PORT_8080_TCP=tcp://{ip}:8080"),
        format!("DB_PORT_8080_TCP_ADDR={ip}"),
        "DB_PORT_8080_TCP_PORT=8080".to_string(),
        "DB_PORT_8080_TCP_PROTO=tcp".to_string(),
        format!("DB_PORT_5353_UDP=udp://{ip}:5353"),
        "DB_PORT_5353_UDP_PROTO=udp".to_string(),
        "DB_ENV_GREETING=hello".to_string(),
        "DB_NAME=/".to_string(),
    ] {
        assert!(env.lines().any(|l| l.starts_with(&want)), "{want} missing from:\n{env}");
    }

    // rmi while a container uses it: Docker's conflicts.
    let full_id = img.id();
    let short = &hexof(&full_id)[..12];
    let o = h.linkrt(&["rmi", TAG]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(
        o.stderr.trim(),
        format!(
            "Error response from daemon: conflict: unable to remove repository reference \"{TAG}\" (must force) - container {} is using its referenced image {short}",
            &id[..12]
        )
    );
    for args in [vec!["rmi", short], vec!["rmi", "-f", short]] {
        let o = h.linkrt(&args);
        assert_eq!(o.code, 1);
        assert_eq!(
            o.stderr.trim(),
            format!(
                "Error response from daemon: conflict: unable to delete {short} (cannot be forced) - image is being used by running container {}",
                &id[..12]
            )
        );
    }
    h.ok(&["stop", "-t", "1", "web"]);
    let o = h.linkrt(&["rmi", short]);
    assert!(
        o.stderr.contains(&format!(
            "(must be forced) - image is being used by stopped container {}",
            &id[..12]
        )),
        "{o:?}"
    );
    // Forced: gone from `images`, yet the stopped container starts again (its layers stay).
    let out = h.ok(&["rmi", "-f", TAG]);
    assert_eq!(out, format!("Untagged: {TAG}\nDeleted: {}", img.id()));
    assert!(!h.ok(&["images"]).contains("linkrt-test/bbx"));
    let o = h.linkrt(&["run", "--rm", TAG, "true"]);
    assert_eq!(o.code, 125);
    h.ok(&["start", "web"]);
    let port = h
        .ok(&["port", "web", "8080/tcp"])
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    eventually(20, || client.curl(&format!("http://{HOST_IP}:{port}/")));
    h.ok(&["rm", "-f", "web"]);
    // The next change of the store collects what no container uses any more.
    h.ok(&["load", "-i", layout.to_str().unwrap()]);
    h.ok(&["rmi", TAG]);
    assert_eq!(store_contents(&h), Vec::<String>::new());
}

#[test]
fn unknown_and_builtin_images() {
    let h = Host::new();
    let o = h.linkrt(&["run", "--rm", "nosuch"]);
    assert_eq!(o.code, 125);
    // Docker's two lines: the CLI's own, then the (absent) registry's answer, said honestly.
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines[0], "Unable to find image 'nosuch:latest' locally", "{o:?}");
    assert!(
        lines[1].starts_with(
            "linkrt: Error response from daemon: pull access denied for nosuch, repository does not exist"
        ) && lines[1].contains("linkrt has no registry"),
        "{o:?}"
    );
    let o = h.linkrt(&["create", "linkrt-test/nosuch:v9"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr.lines().next(),
        Some("Unable to find image 'linkrt-test/nosuch:v9' locally"),
        "{o:?}"
    );
    assert_eq!(h.ok(&["ps", "-aq"]), "", "nothing created");
    let o = h.linkrt(&["rmi", "nosuch"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (1, "Error response from daemon: No such image: nosuch:latest")
    );
    let o = h.linkrt(&["image", "inspect", "nosuch"]);
    assert_eq!(o.code, 1);

    // The built-ins are images like the others: listed, inspected, in use, not removable.
    let ls = h.ok(&["images"]);
    for name in [
        "alpine",
        "redis",
        "training/webapp",
        "training/postgres",
        "jpetazzo/trainingwheels",
    ] {
        let row = ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name}: {ls}"));
        assert!(row.contains(" latest ") && row.contains("N/A"), "{row}");
    }
    assert_eq!(
        h.ok(&["image", "inspect", "-f", "{{.Config.ExposedPorts}}", "redis"]),
        "map[6379/tcp:map[]]"
    );
    let rid = h.ok(&["image", "inspect", "-f", "{{.Id}}", "redis"]);
    assert_eq!(h.ok(&["inspect", "-f", "{{.Id}}", "redis:latest"]), rid);
    let id = h.ok(&["run", "-d", "--name", "db", "redis"]);
    assert_eq!(h.inspect("db", "{{.Image}}"), rid);
    let o = h.linkrt(&["rmi", "redis"]);
    assert!(
        o.stderr
            .contains(&format!("image is being used by running container {}", &id[..12])),
        "{o:?}"
    );
    h.ok(&["rm", "-f", "db"]);
    let o = h.linkrt(&["rmi", "-f", "alpine"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("(cannot be forced) - alpine:latest is built into linkrt"),
        "{o:?}"
    );
    assert!(h.ok(&["images"]).contains("alpine"));
}

#[test]
fn import_a_rootfs_tarball() {
    let h = Host::new();
    let work = TempDir::new("linkrt-img");
    let rootfs = gzip(&layer1());
    let file = work.path.join("rootfs.tar.gz");
    fs::write(&file, &rootfs).unwrap();
    let id = h.ok(&["import", file.to_str().unwrap(), "linkrt-test/imported:v2"]);
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(
        h.ok(&[
            "run",
            "--rm",
            "linkrt-test/imported:v2",
            "/bin/busybox",
            "cat",
            "/www/index.html"
        ]),
        "hello from layer one"
    );
    // No command in an imported image: Docker's words.
    let o = h.linkrt(&["run", "--rm", "linkrt-test/imported:v2"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("No command specified"), "{o:?}");
    // From stdin, untagged.
    let o = linkrt_stdin(&h, &["import", "-"], &file);
    assert_eq!(o.code, 0, "{o:?}");
    let id2 = o.stdout.trim().to_string();
    let ls = h.ok(&["images"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("<none>") && l.contains(&hexof(&id2)[..12])),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.starts_with("linkrt-test/imported ") && l.contains("v2")),
        "{ls}"
    );
    // The layer is shared: one diff for both images.
    assert_eq!(fs::read_dir(store_dir(&h).join("diffs")).unwrap().count(), 1);
    h.ok(&["rmi", &id2]);
    h.ok(&["rmi", "linkrt-test/imported:v2"]);
    assert_eq!(store_contents(&h), Vec::<String>::new());
}

/// Loads a hostile archive: refused with `msg` in the error; nothing stays in the store.
fn refused(h: &Host, input: &Path, msg: &str) {
    let o = h.linkrt(&["load", "-i", input.to_str().unwrap()]);
    assert_ne!(o.code, 0, "{} was loaded: {o:?}", input.display());
    assert!(o.stderr.contains(msg), "{}: expected {msg:?} in {o:?}", input.display());
    assert_eq!(
        store_contents(h),
        Vec::<String>::new(),
        "{} left something",
        input.display()
    );
    assert!(
        !h.ok(&["images"]).contains("linkrt-test/"),
        "{} left an image",
        input.display()
    );
}

/// A one-layer layout whose layer is `layer` (uncompressed).
fn one_layer_layout(dir: &Path, layer: Vec<u8>) {
    let config = config_for(&[&layer], json!({"Cmd": ["/bin/sh"]}));
    let img = Img {
        config,
        layers: vec![(layer.clone(), layer, "application/vnd.oci.image.layer.v1.tar")],
    };
    write_dir(dir, &layout_files(&img, json!({ANN_NAME: "linkrt-test/evil:v1"})));
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let h = Host::new();
    let work = TempDir::new("linkrt-img");
    let img = test_image(false);
    let good = docker_save_tar(&img, TAG);

    // A corrupted blob (one byte of the first layer changed, its name kept), in a tar and in
    // a layout directory.
    let mut files = layout_files(&img, layout_annotations());
    let l1 = format!("blobs/sha256/{}", hexof(&sha(&img.layers[0].1)));
    for (n, data) in files.iter_mut() {
        if *n == l1 {
            let i = data.len() / 2;
            data[i] ^= 0xff;
        }
    }
    let p = work.path.join("corrupt.tar");
    fs::write(&p, tar_of(&files)).unwrap();
    refused(&h, &p, "does not match its digest");
    let d = work.path.join("corrupt-layout");
    write_dir(&d, &files);
    refused(&h, &d, "does not match its digest");

    // A truncated tar.
    let p = work.path.join("truncated.tar");
    fs::write(&p, &good[..good.len() / 2]).unwrap();
    refused(&h, &p, "invalid image archive");
    // And a truncated gzip-compressed one.
    let p = work.path.join("truncated.tar.gz");
    let gz = gzip(&good);
    fs::write(&p, &gz[..gz.len() / 2]).unwrap();
    refused(&h, &p, "invalid image archive");
    // A wrong digest in the legacy form: `<id>.json` whose content is not that ID's.
    let legacy = legacy_tar(&img, TAG);
    let mut ar = tar::Archive::new(&legacy[..]);
    let mut t = TarBuf::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        match e.header().entry_type() {
            tar::EntryType::Directory => t = t.dir(&name, 0o755, 0),
            tar::EntryType::Symlink => {
                let target = e.link_name().unwrap().unwrap().display().to_string();
                t = t.symlink(&name, &target)
            }
            _ if name == format!("{}.json", hexof(&img.id())) => {
                let mut c: Value = serde_json::from_slice(&data).unwrap();
                c["config"]["User"] = json!("root");
                t = t.file(&name, 0o644, 0, &serde_json::to_vec(&c).unwrap())
            }
            _ => t = t.file(&name, 0o644, 0, &data),
        }
    }
    let p = work.path.join("legacy-wrong-digest.tar");
    fs::write(&p, t.done()).unwrap();
    refused(&h, &p, "does not match its digest");

    // Symlinks in the archive itself (not in a layer) that lead out of it.
    let manifest_name = format!("blobs/sha256/{}", hexof(&sha(&img.manifest())));
    for (case, target, msg) in [
        ("abs", "/etc/passwd", "links to the absolute path"),
        ("rel", "../../../../../../etc/passwd", "links outside the archive"),
    ] {
        let mut t = TarBuf::new();
        for (n, data) in layout_files(&img, layout_annotations()) {
            t = if n == manifest_name {
                t.symlink(&n, target)
            } else {
                t.file(&n, 0o644, 0, &data)
            };
        }
        let p = work.path.join(format!("archive-symlink-{case}.tar"));
        fs::write(&p, t.done()).unwrap();
        refused(&h, &p, msg);
    }

    // Path traversal, absolute paths and symlink escapes inside a layer.
    let marker = format!("linkrt-escape-{}", rand_suffix(8));
    let outside = TempDir::new("linkrt-outside");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            TarBuf::new()
                .file(&format!("../../etc/{marker}"), 0o644, 0, b"x")
                .done(),
            "'..' component",
        ),
        (
            "absolute",
            TarBuf::new().file(&format!("/etc/{marker}"), 0o644, 0, b"x").done(),
            "absolute path",
        ),
        (
            "symlink-abs",
            TarBuf::new()
                .symlink("esc", outside.path.to_str().unwrap())
                .file(&format!("esc/{marker}"), 0o644, 0, b"x")
                .done(),
            "leads outside the layer",
        ),
        (
            "symlink-rel",
            TarBuf::new()
                .dir("a/", 0o755, 0)
                .symlink("a/up", "../../../../../../../../..")
                .file(&format!("a/up{}/{marker}", outside.path.display()), 0o644, 0, b"x")
                .done(),
            "leads outside the layer",
        ),
        (
            "hardlink-out",
            TarBuf::new()
                .link("passwd", tar::EntryType::Link, "../../../etc/passwd")
                .done(),
            "'..' component",
        ),
        (
            "bomb",
            TarBuf::new().file("ok", 0o644, 0, b"x").bomb("huge", 1 << 50),
            "tar bomb",
        ),
    ];
    for (name, layer, msg) in cases {
        let d = work.path.join(name);
        one_layer_layout(&d, layer);
        refused(&h, &d, msg);
    }
    assert!(!Path::new("/etc").join(&marker).exists());
    assert_eq!(
        fs::read_dir(&outside.path).unwrap().count(),
        0,
        "nothing written outside"
    );

    // A tar bomb at the archive's level: refused before anything is written.
    let p = work.path.join("bomb.tar");
    fs::write(
        &p,
        TarBuf::new()
            .file("index.json", 0o644, 0, b"{}")
            .bomb("blobs/sha256/x", 1 << 50),
    )
    .unwrap();
    refused(&h, &p, "tar bomb");

    // Device nodes are skipped (as rootless tools do), the rest of the layer loads.
    let d = work.path.join("device");
    one_layer_layout(
        &d,
        TarBuf::new()
            .dir("dev/", 0o755, 0)
            .device("dev/mynull")
            .file("ok", 0o644, 0, b"ok")
            .done(),
    );
    assert_eq!(
        h.ok(&["load", "-i", d.to_str().unwrap()]),
        "Loaded image: linkrt-test/evil:v1"
    );
    let m = Merged::new(&h, "linkrt-test/evil:v1");
    assert!(m.path().join("ok").is_file());
    assert!(m.path().join("dev").is_dir() && !m.path().join("dev/mynull").exists());
    drop(m);
    h.ok(&["rmi", "linkrt-test/evil:v1"]);
    assert_eq!(store_contents(&h), Vec::<String>::new());
}

/// A third layer of its own (so that a second image has content the first has not).
fn layer3() -> Vec<u8> {
    TarBuf::new()
        .dir("extra/", 0o755, 0)
        .file("extra/only-here.txt", 0o644, 0, b"third\n")
        .done()
}

#[test]
fn a_failed_import_is_all_or_nothing_and_a_killed_one_is_collected() {
    let h = Host::new();
    let work = TempDir::new("linkrt-img");
    let img = test_image(false);
    let layout = work.path.join("layout");
    write_dir(&layout, &layout_files(&img, layout_annotations()));
    h.ok(&["load", "-i", layout.to_str().unwrap()]);
    let before = store_contents(&h);
    assert!(!before.is_empty());

    // An archive of two images: the first fine (a layer of its own, one shared with the
    // stored image), the second with a layer that does not unpack to its config's diff ID.
    let l3 = layer3();
    let fine = Img {
        config: config_for(&[&img.layers[0].0, &l3], json!({"Cmd": ["/bin/sh"]})),
        layers: vec![
            (img.layers[0].0.clone(), img.layers[0].1.clone(), img.layers[0].2),
            (l3.clone(), gzip(&l3), "application/vnd.oci.image.layer.v1.tar+gzip"),
        ],
    };
    let l4 = TarBuf::new().file("four", 0o644, 0, b"4").done();
    let bad = Img {
        config: config_for(&[b"not the layer".as_slice()], json!({"Cmd": ["/bin/sh"]})),
        layers: vec![(l4.clone(), l4, "application/vnd.oci.image.layer.v1.tar")],
    };
    let mut files = layout_files(&fine, json!({ANN_NAME: "docker.io/linkrt-test/fine:v1"}));
    let bad_files = layout_files(&bad, json!({ANN_NAME: "docker.io/linkrt-test/bad:v1"}));
    let mut manifests = Vec::new();
    for f in [&files, &bad_files] {
        let idx: Value = serde_json::from_slice(&f.iter().find(|(n, _)| n == "index.json").unwrap().1).unwrap();
        manifests.push(idx["manifests"][0].clone());
    }
    files.retain(|(n, _)| n != "index.json");
    files.extend(
        bad_files
            .into_iter()
            .filter(|(n, _)| n != "index.json" && n != "oci-layout"),
    );
    files.push((
        "index.json".into(),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap(),
    ));
    // The probe: the first image alone loads.
    let alone = work.path.join("fine");
    write_dir(
        &alone,
        &layout_files(&fine, json!({ANN_NAME: "docker.io/linkrt-test/fine:v1"})),
    );
    assert_eq!(
        h.ok(&["load", "-i", alone.to_str().unwrap()]),
        "Loaded image: linkrt-test/fine:v1"
    );
    h.ok(&["rmi", "linkrt-test/fine:v1"]);
    assert_eq!(store_contents(&h), before);
    // Together with the bad one, neither does; the stored image is untouched and still runs.
    let p = work.path.join("two.tar");
    fs::write(&p, tar_of(&files)).unwrap();
    let o = h.linkrt(&["load", "-i", p.to_str().unwrap()]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("but the image config says"), "{o:?}");
    assert_eq!(store_contents(&h), before, "a refused archive left something");
    let ls = h.ok(&["images"]);
    assert!(
        !ls.contains("linkrt-test/fine") && !ls.contains("linkrt-test/bad"),
        "{ls}"
    );
    assert_eq!(
        h.ok(&["run", "--rm", TAG, "cat", "/www/index.html"]),
        "hello from layer two"
    );

    // A load killed half way leaves its stage (the probe), which the next change of the
    // store removes; nothing of it is ever an image.
    let tarfile = work.path.join("save.tar");
    let data = docker_save_tar(&fine, "linkrt-test/killed:v1");
    fs::write(&tarfile, &data).unwrap();
    let mut child = Command::new(linkrt_bin())
        .arg("load")
        .env("LINKRT_ROOT", &h.t.cfg.root)
        .env("LINKRT_RUN_ROOT", &h.t.cfg.run_root)
        .env("LINKRT_BPFFS", &h.t.cfg.bpffs)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn linkrt load");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data[..data.len() / 2]).unwrap();
    stdin.flush().unwrap();
    eventually(20, || {
        store_contents(&h)
            .iter()
            .any(|p| {
                p.starts_with("tmp/")
                    && fs::read_dir(store_dir(&h).join(p).join("in")).is_ok_and(|mut d| d.next().is_some())
            })
            .then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let left = store_contents(&h);
    assert!(
        left.iter().any(|p| p.starts_with("tmp/")),
        "the killed load left no stage: {left:?}"
    );
    assert!(!h.ok(&["images"]).contains("linkrt-test/killed"));
    h.ok(&["load", "-i", layout.to_str().unwrap()]);
    assert_eq!(store_contents(&h), before, "the killed load's stage was not collected");
    h.ok(&["rmi", TAG]);
    assert_eq!(store_contents(&h), Vec::<String>::new());
}
