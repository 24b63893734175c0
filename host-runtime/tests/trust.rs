//! The trust policy with real plugin builds: signed by keys made here,
//! unsigned, signed by another key, changed or swapped after signing, an
//! allowlist of digests, loose permissions, and the default policy. Every
//! refusal happens before the library is opened: the refused file is never
//! mapped into the process.

mod common;

use std::path::{Path, PathBuf};

use common::{Basic, Captured, current_thread, fixture, fresh_copy, multi_thread};
use horizon_plugin_host::{
    LoadError, PluginHost, Sha256, TrustDecision, TrustKey, TrustPolicy, TrustRefusal,
};

/// A key pair made for one test, and its public key file.
struct Signer {
    keys: minisign::KeyPair,
    public_file: PathBuf,
}

impl Signer {
    fn new(dir: &Path, name: &str) -> Signer {
        let keys = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        // The directory is shared by the tests of this process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let public_file = dir.join(format!("{name}-{n}.pub"));
        std::fs::write(&public_file, keys.pk.to_box().unwrap().into_string()).unwrap();
        Signer { keys, public_file }
    }

    fn key(&self) -> TrustKey {
        TrustKey::from_file(&self.public_file).unwrap()
    }

    /// Writes `<library>.minisig`, as `minisign -Sm <library>` does.
    fn sign(&self, library: &Path) {
        let bytes = std::fs::File::open(library).unwrap();
        let signature = minisign::sign(
            Some(&self.keys.pk),
            &self.keys.sk,
            bytes,
            Some("horizon trust test"),
            None,
        )
        .unwrap();
        std::fs::write(signature_of(library), signature.into_string()).unwrap();
    }
}

fn signature_of(library: &Path) -> PathBuf {
    let mut path = library.as_os_str().to_owned();
    path.push(".minisig");
    PathBuf::from(path)
}

/// A fresh copy of the `basic` fixture and the directory it is in.
fn basic_copy() -> (PathBuf, PathBuf) {
    let library = fresh_copy("basic");
    let dir = library.parent().unwrap().to_owned();
    (library, dir)
}

/// Whether the file at `path` is mapped into this process.
fn mapped(path: &Path) -> bool {
    let path = path.display().to_string();
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .any(|line| line.ends_with(&path) || line.ends_with(&format!("{path} (deleted)")))
}

fn host_with(policy: TrustPolicy) -> PluginHost {
    PluginHost::builder(tokio::runtime::Handle::current())
        .trust(policy)
        .build()
}

/// Loads `library` under `policy` and returns the refusal.
async fn refused(policy: TrustPolicy, library: &Path) -> TrustRefusal {
    let host = host_with(policy);
    let err = host.load(library).await.unwrap_err();
    assert!(
        err.to_string().contains(&library.display().to_string()),
        "the error names the file: {err}"
    );
    assert!(!mapped(library), "a refused file is never opened");
    assert!(host.plugins().is_empty());
    match err {
        LoadError::Untrusted { path, reason } => {
            assert_eq!(path, library);
            reason
        }
        other => panic!("expected a trust refusal, got {other}"),
    }
}

#[test]
fn a_plugin_signed_by_a_trusted_key_loads_from_a_private_copy_of_the_checked_bytes() {
    multi_thread().block_on(async {
        let (library, dir) = basic_copy();
        let signer = Signer::new(&dir, "operator");
        signer.sign(&library);
        let policy = TrustPolicy::signed_by([signer.key()]);
        assert!(matches!(
            policy.check(&library).unwrap(),
            TrustDecision::Signed { trusted_comment, .. } if trusted_comment == "horizon trust test"
        ));

        let host = host_with(policy);
        let basic = Basic::load_path(host.clone(), library.clone()).await;
        assert_eq!(basic.run("spawn", 21).await, serde_json::json!(42));
        // What is mapped is the private copy (removed once opened), never
        // the file that was checked, so swapping that file changes nothing.
        assert!(!mapped(&library));
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let name = library.file_name().unwrap().to_str().unwrap();
        let copy = maps
            .lines()
            .find(|l| l.contains("/horizon-verified-") && l.contains(&format!("/{name} ")))
            .expect("the verified copy is mapped");
        assert!(copy.ends_with(&format!("/{name} (deleted)")), "{copy}");
        // Its name is the plugin's file name; the listed path is the original.
        assert_eq!(host.plugins()[0].path, library);
        host.shutdown().await;
    });
}

#[test]
fn an_unsigned_plugin_is_refused_before_it_is_opened() {
    multi_thread().block_on(async {
        let (library, dir) = basic_copy();
        let signer = Signer::new(&dir, "operator");
        let reason = refused(TrustPolicy::signed_by([signer.key()]), &library).await;
        assert!(
            matches!(&reason, TrustRefusal::Unsigned { signature } if *signature == signature_of(&library)),
            "{reason}"
        );
        assert!(reason.to_string().contains("unsigned"), "{reason}");
    });
}

#[test]
fn a_plugin_signed_by_another_key_is_refused() {
    current_thread().block_on(async {
        let (library, dir) = basic_copy();
        let trusted = Signer::new(&dir, "operator");
        let stranger = Signer::new(&dir, "stranger");
        stranger.sign(&library);
        let reason = refused(TrustPolicy::signed_by([trusted.key()]), &library).await;
        assert!(matches!(reason, TrustRefusal::UnknownKey), "{reason}");
        // Trusting both keys, it loads.
        let host = host_with(TrustPolicy::signed_by([trusted.key(), stranger.key()]));
        let id = host.load(&library).await.unwrap();
        host.unload(id).await.unwrap();
    });
}

#[test]
fn a_plugin_changed_or_swapped_after_signing_is_refused() {
    multi_thread().block_on(async {
        let (library, dir) = basic_copy();
        let signer = Signer::new(&dir, "operator");
        let policy = TrustPolicy::signed_by([signer.key()]);

        // One byte appended after signing.
        signer.sign(&library);
        let mut bytes = std::fs::read(&library).unwrap();
        bytes.push(0);
        std::fs::write(&library, &bytes).unwrap();
        let reason = refused(policy.clone(), &library).await;
        assert!(matches!(reason, TrustRefusal::Tampered { .. }), "{reason}");
        assert!(
            reason.to_string().contains("changed after signing"),
            "{reason}"
        );

        // The signed file replaced by another plugin, signature kept.
        let other = dir.join(format!(
            "swapped-{}",
            library.file_name().unwrap().to_str().unwrap()
        ));
        std::fs::copy(fixture("basic"), &other).unwrap();
        signer.sign(&other);
        std::fs::copy(fixture("lean"), &other).unwrap();
        let reason = refused(policy.clone(), &other).await;
        assert!(matches!(reason, TrustRefusal::Tampered { .. }), "{reason}");

        // A garbled signature file is its own error.
        std::fs::write(signature_of(&other), "not a signature\n").unwrap();
        let reason = refused(policy, &other).await;
        assert!(
            matches!(reason, TrustRefusal::BadSignature { .. }),
            "{reason}"
        );
    });
}

#[test]
fn an_allowlist_of_digests_loads_exactly_those_files() {
    multi_thread().block_on(async {
        let (library, _) = basic_copy();
        let digest = Sha256::of_file(&library).unwrap();
        let host = host_with(TrustPolicy::sha256_allowlist([digest]));
        let id = host.load(&library).await.unwrap();
        host.unload(id).await.unwrap();

        let lean = fresh_copy("lean");
        let reason = refused(TrustPolicy::sha256_allowlist([digest]), &lean).await;
        let lean_digest = Sha256::of_file(&lean).unwrap();
        assert!(
            matches!(reason, TrustRefusal::DigestNotAllowed(d) if d == lean_digest),
            "{reason}"
        );
        assert!(
            reason.to_string().contains(&lean_digest.to_string()),
            "{reason}"
        );
    });
}

#[test]
fn files_and_directories_other_users_can_write_are_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt as _;
    let set_mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    multi_thread().block_on(async {
        let (library, dir) = basic_copy();

        // A world-writable file, under the default policy too.
        set_mode(&library, 0o757);
        let reason = refused(TrustPolicy::any_file(), &library).await;
        assert!(
            matches!(&reason, TrustRefusal::LoosePermissions { path, who, .. } if *path == library && who == "every user"),
            "{reason}"
        );
        assert!(reason.to_string().contains("allow_loose_permissions"), "names the opt-out: {reason}");
        set_mode(&library, 0o755);

        // A file in a world-writable directory (no sticky bit).
        let loose = dir.join(format!("loose-{}", std::process::id()));
        std::fs::create_dir_all(&loose).unwrap();
        let inside = loose.join(library.file_name().unwrap());
        std::fs::copy(&library, &inside).unwrap();
        set_mode(&loose, 0o777);
        let digest = Sha256::of_file(&inside).unwrap();
        let reason = refused(TrustPolicy::sha256_allowlist([digest]), &inside).await;
        assert!(
            matches!(&reason, TrustRefusal::LoosePermissions { path, .. } if *path == loose),
            "{reason}"
        );

        // As root (CI): a group-writable directory whose group is not the
        // owner's own, and a file of another user.
        use std::os::unix::fs::MetadataExt as _;
        if std::fs::metadata(&inside).unwrap().uid() == 0 {
            set_mode(&loose, 0o775);
            std::os::unix::fs::chown(&loose, None, Some(4242)).unwrap();
            let reason = refused(TrustPolicy::any_file(), &inside).await;
            assert!(
                matches!(&reason, TrustRefusal::LoosePermissions { who, .. } if who == "group 4242"),
                "{reason}"
            );
            set_mode(&loose, 0o755);
            std::os::unix::fs::chown(&inside, Some(4242), None).unwrap();
            let reason = refused(TrustPolicy::any_file(), &inside).await;
            assert!(
                matches!(&reason, TrustRefusal::ForeignOwner { uid: 4242, .. }),
                "{reason}"
            );
            std::os::unix::fs::chown(&inside, Some(0), None).unwrap();
        }

        // The opt-out.
        set_mode(&loose, 0o777);
        let host = host_with(TrustPolicy::sha256_allowlist([digest]).allow_loose_permissions(true));
        let id = host.load(&inside).await.unwrap();
        host.unload(id).await.unwrap();
        set_mode(&loose, 0o755);
    });
}

#[test]
fn the_default_loads_any_file_with_a_warning_and_refusals_are_logged() {
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        current_thread().block_on(async {
            let (library, dir) = basic_copy();
            let host = PluginHost::new(tokio::runtime::Handle::current());
            let id = host.load(&library).await.unwrap();
            host.unload(id).await.unwrap();
            let text = log.text();
            let warnings: Vec<_> = text
                .lines()
                .filter(|l| l.contains("WARN") && l.contains("without a trust check"))
                .collect();
            assert_eq!(warnings.len(), 1, "one line per load: {text}");
            assert!(warnings[0].contains(&library.display().to_string()));

            // (The loaded copy may stay mapped after unload: another one.)
            let library = fresh_copy("basic");
            let signer = Signer::new(&dir, "operator");
            refused(TrustPolicy::signed_by([signer.key()]), &library).await;
            let text = log.text();
            assert!(
                text.lines().any(|l| l.contains("ERROR")
                    && l.contains("refused to load a plugin")
                    && l.contains("unsigned")
                    && l.contains(&library.display().to_string())),
                "{text}"
            );
        });
    });
}
