//! The trust policy ([`TrustPolicy`]): which plugin files a host opens,
//! decided before the dynamic loader runs any of their code, on the very
//! bytes that are then opened.
//!
//! `dlopen` runs a library's initializers before the host can look at its
//! declaration, so whoever can put a file where the host loads from runs
//! code in the host. The policy reads the file once, checks the bytes read
//! (a SHA-256 allowlist, or a minisign signature by a key the operator
//! lists), writes those same bytes into a directory only this user can
//! enter, and the host opens that copy: replacing the file after the check
//! changes nothing. Files and directories other users can write are
//! refused first, under every policy (as ssh refuses loose key files).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The SHA-256 digest of a plugin file, for [`TrustPolicy::sha256_allowlist`].
/// Parsed from and printed as the 64 hex digits `sha256sum` prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    /// The digest of the file at `path`.
    ///
    /// # Errors
    /// If the file cannot be read.
    pub fn of_file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Ok(Sha256::of(&std::fs::read(path)?))
    }

    /// The digest's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// A string that is not 64 hex digits, given as a [`Sha256`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{0}` is not a SHA-256 digest (64 hex digits, as `sha256sum` prints)")]
pub struct DigestParseError(String);

impl FromStr for Sha256 {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DigestParseError(s.to_owned());
        let hex = s.trim().as_bytes();
        if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Sha256(out))
    }
}

/// A minisign public key the operator trusts to sign plugins
/// ([`TrustPolicy::signed_by`]), as `minisign -G` writes it.
#[derive(Clone)]
pub struct TrustKey {
    key: minisign_verify::PublicKey,
    /// Where it came from, for messages: the key file, or "key N".
    name: String,
}

impl fmt::Debug for TrustKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A key file or string that is not a minisign public key.
#[derive(Debug, thiserror::Error)]
#[error("{what} is not a minisign public key: {reason}")]
pub struct TrustKeyError {
    what: String,
    reason: String,
}

impl TrustKey {
    /// Reads a public key file (`minisign.pub`: an untrusted comment line,
    /// then the key).
    ///
    /// # Errors
    /// If the file cannot be read or holds no minisign public key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TrustKeyError> {
        let path = path.as_ref();
        let error = |reason: String| TrustKeyError {
            what: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let mut key = TrustKey::decode(&text).map_err(|e| error(e.reason))?;
        key.name = path.display().to_string();
        Ok(key)
    }

    /// A key from the text of a key file, or from the key's base64 line
    /// alone (as `minisign -P` takes it).
    ///
    /// # Errors
    /// If `text` holds no minisign public key.
    pub fn decode(text: &str) -> Result<Self, TrustKeyError> {
        let text = text.trim();
        let key = if text.contains('\n') {
            minisign_verify::PublicKey::decode(text)
        } else {
            minisign_verify::PublicKey::from_base64(text)
        };
        let key = key.map_err(|e| TrustKeyError {
            what: "the key".to_owned(),
            reason: e.to_string(),
        })?;
        let name = key
            .untrusted_comment()
            .map(|c| c.trim_start_matches("untrusted comment:").trim())
            .filter(|c| !c.is_empty())
            .unwrap_or("a minisign key")
            .to_owned();
        Ok(TrustKey { key, name })
    }

    /// The key file's path, or the key's comment when decoded from text.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Which plugin files a host opens. Checked before the library is opened,
/// so nothing of a refused file runs; see [`HostBuilder::trust`](crate::HostBuilder::trust).
///
/// # Examples
/// ```no_run
/// use horizon_plugin_host::{PluginHost, TrustKey, TrustPolicy};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let key = TrustKey::from_file("/etc/horizon/plugins.pub")?;
/// let host = PluginHost::builder(tokio::runtime::Handle::current())
///     .trust(TrustPolicy::signed_by([key]))
///     .build();
/// // Loads only if `libgreeter.so.minisig` is a signature of exactly these
/// // bytes by that key.
/// host.load("/srv/plugins/libgreeter.so").await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TrustPolicy {
    rule: Rule,
    loose_permissions: bool,
    copies_dir: Option<PathBuf>,
}

#[derive(Clone, Debug)]
enum Rule {
    AnyFile,
    Digests(Arc<BTreeSet<Sha256>>),
    Keys(Arc<[TrustKey]>),
}

impl Default for TrustPolicy {
    /// [`TrustPolicy::any_file`].
    fn default() -> Self {
        TrustPolicy::any_file()
    }
}

/// What a policy decided about a file it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustDecision {
    /// [`TrustPolicy::any_file`]: nothing was checked but permissions.
    Unchecked,
    /// The file's digest is on the allowlist.
    DigestAllowed(Sha256),
    /// The file is signed by a trusted key.
    Signed {
        /// The key ([`TrustKey::name`]).
        key: String,
        /// The signature's trusted comment (signed too).
        trusted_comment: String,
    },
}

impl fmt::Display for TrustDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustDecision::Unchecked => f.write_str("not checked (any file is accepted)"),
            TrustDecision::DigestAllowed(digest) => write!(f, "SHA-256 {digest} is allowed"),
            TrustDecision::Signed {
                key,
                trusted_comment,
            } => write!(f, "signed by {key} ({trusted_comment})"),
        }
    }
}

/// Why a [`TrustPolicy`] refused a file (in
/// [`LoadError::Untrusted`](crate::LoadError::Untrusted)).
/// Nothing of the file ran.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustRefusal {
    /// The file, or a directory on its path, could not be read.
    #[error("{} could not be read", path.display())]
    Unreadable {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file, or a directory on its path, can be written by other users,
    /// who could then replace it.
    #[error(
        "{} is writable by {who} (mode {mode:04o}), who could replace the plugin: `chmod go-w` it, or opt out with `TrustPolicy::allow_loose_permissions` (`--allow-loose-permissions`)",
        path.display()
    )]
    LoosePermissions {
        /// The file or directory.
        path: PathBuf,
        /// "every user", or the group.
        who: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file, or a directory on its path, belongs to another user than
    /// the host's (or root).
    #[error(
        "{} belongs to another user (uid {uid}), who could replace the plugin; opt out with `TrustPolicy::allow_loose_permissions` (`--allow-loose-permissions`)",
        path.display()
    )]
    ForeignOwner {
        /// The file or directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// The file's digest is not on the allowlist.
    #[error("its SHA-256 digest {0} is not on the allowlist")]
    DigestNotAllowed(Sha256),
    /// There is no signature beside the file.
    #[error("it is unsigned: there is no signature {}", signature.display())]
    Unsigned {
        /// Where the signature was looked for (`<library>.minisig`).
        signature: PathBuf,
    },
    /// The signature file is not a minisign signature.
    #[error("its signature {} is not a minisign signature: {reason}", signature.display())]
    BadSignature {
        /// The signature file.
        signature: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The signature is by a key the policy does not list.
    #[error("it is signed by a key this host does not trust")]
    UnknownKey,
    /// The signature names a trusted key but does not verify: the file (or
    /// the signature's trusted comment) changed after signing, or the
    /// signature was not made with that key.
    #[error(
        "its signature names the key {key} but does not verify: it was changed after signing, or not signed with that key"
    )]
    Tampered {
        /// The key whose signature it is ([`TrustKey::name`]).
        key: String,
    },
    /// The private copy that would be opened could not be written.
    #[error("its verified copy could not be written in {}", dir.display())]
    CopyFailed {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

impl TrustPolicy {
    /// Any file is loaded (the default, for development): a one-line
    /// warning is logged per load. Permissions are still checked.
    pub fn any_file() -> Self {
        TrustPolicy {
            rule: Rule::AnyFile,
            loose_permissions: false,
            copies_dir: None,
        }
    }

    /// Only files whose SHA-256 digest is one of `digests`.
    pub fn sha256_allowlist(digests: impl IntoIterator<Item = Sha256>) -> Self {
        TrustPolicy {
            rule: Rule::Digests(Arc::new(digests.into_iter().collect())),
            ..TrustPolicy::any_file()
        }
    }

    /// Only files signed by one of `keys`, with the signature beside the
    /// library in minisign's format and default place, `<library>.minisig`
    /// (`minisign -Sm libplugin.so` writes it).
    pub fn signed_by(keys: impl IntoIterator<Item = TrustKey>) -> Self {
        TrustPolicy {
            rule: Rule::Keys(keys.into_iter().collect()),
            ..TrustPolicy::any_file()
        }
    }

    /// Also loads files that other users can write, or that sit in
    /// directories they can write (refused by default).
    pub fn allow_loose_permissions(mut self, allow: bool) -> Self {
        self.loose_permissions = allow;
        self
    }

    /// Where verified copies are written before they are opened (default:
    /// the system's temporary directory). Each load writes its copy into a
    /// new directory of mode 0700 there and removes both once the library
    /// is open. The directory must allow executable mappings (not a
    /// `noexec` mount).
    pub fn copies_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.copies_dir = Some(dir.into());
        self
    }

    /// Applies the policy to the file at `path` without opening it as a
    /// library: what [`PluginHost::load`](crate::PluginHost::load) would
    /// decide before opening it.
    ///
    /// # Errors
    /// Why the file is refused.
    pub fn check(&self, path: impl AsRef<Path>) -> Result<TrustDecision, TrustRefusal> {
        self.verify(path.as_ref()).map(|(decision, _)| decision)
    }

    /// Checks permissions, reads the file once and checks those bytes.
    /// Under [`TrustPolicy::any_file`] nothing is read (the bytes are
    /// empty), and a missing file is left to the loader to report.
    fn verify(&self, path: &Path) -> Result<(TrustDecision, Vec<u8>), TrustRefusal> {
        if !self.loose_permissions {
            // A missing file (reported by the read or the loader): the
            // nearest directory on its path that exists, so that nobody
            // else can create it before it is read.
            let existing = path.ancestors().find(|p| std::fs::metadata(p).is_ok());
            check_permissions(existing.unwrap_or(path))?;
        }
        let read = || {
            std::fs::read(path).map_err(|source| TrustRefusal::Unreadable {
                path: path.to_owned(),
                source,
            })
        };
        match &self.rule {
            Rule::AnyFile => Ok((TrustDecision::Unchecked, Vec::new())),
            Rule::Digests(allowed) => {
                let bytes = read()?;
                let digest = Sha256::of(&bytes);
                if !allowed.contains(&digest) {
                    return Err(TrustRefusal::DigestNotAllowed(digest));
                }
                Ok((TrustDecision::DigestAllowed(digest), bytes))
            }
            Rule::Keys(keys) => {
                let bytes = read()?;
                Ok((verify_signature(path, &bytes, keys)?, bytes))
            }
        }
    }

    /// Decides on `path` and returns what to open: the file itself under
    /// [`TrustPolicy::any_file`], else a private copy of the bytes that
    /// were checked. Refusals are logged.
    /// The path opened is absolute: the loader never searches its
    /// library path for a name the policy checked elsewhere.
    pub(crate) fn admit(&self, path: &Path) -> Result<Admitted, TrustRefusal> {
        let refused = |reason: TrustRefusal| {
            tracing::error!(path = %path.display(), "refused to load a plugin: {reason}");
            reason
        };
        let absolute = std::path::absolute(path)
            .map_err(|source| TrustRefusal::Unreadable {
                path: path.to_owned(),
                source,
            })
            .map_err(refused)?;
        let (decision, bytes) = self.verify(&absolute).map_err(refused)?;
        if let Rule::AnyFile = self.rule {
            return Ok(Admitted {
                open: absolute,
                decision,
                _copy: None,
            });
        }
        let parent = self.copies_dir.clone().unwrap_or_else(std::env::temp_dir);
        let copy = (|| {
            // Always (the opt-out is about where plugins come from): who
            // can write here could rename our directory and put theirs.
            check_permissions(&parent)?;
            let name = path.file_name().unwrap_or(OsStr::new("plugin"));
            PrivateCopy::write(&parent, name, &bytes).map_err(|source| TrustRefusal::CopyFailed {
                dir: parent.clone(),
                source,
            })
        })()
        .map_err(refused)?;
        Ok(Admitted {
            open: copy.file.clone(),
            decision,
            _copy: Some(copy),
        })
    }
}

/// A file a policy accepted: open `open` (and keep this value until the
/// library is open: dropping it removes the private copy, which the
/// mapping outlives).
pub(crate) struct Admitted {
    pub(crate) open: PathBuf,
    pub(crate) decision: TrustDecision,
    _copy: Option<PrivateCopy>,
}

/// A directory of mode 0700 made for one load, holding the verified bytes.
struct PrivateCopy {
    dir: PathBuf,
    file: PathBuf,
}

impl PrivateCopy {
    fn write(parent: &Path, name: &OsStr, bytes: &[u8]) -> std::io::Result<PrivateCopy> {
        use std::hash::{BuildHasher as _, Hasher as _};
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let mut attempt = 0;
        let dir = loop {
            // A name hard to guess (std's random hasher keys, the clock);
            // `mkdir` fails rather than reuse what someone prepared, and
            // does not follow a planted link.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            let dir = parent.join(format!("horizon-verified-{:016x}", h.finish()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let copy = PrivateCopy {
            file: dir.join(name),
            dir,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o500)
            .open(&copy.file)?
            .write_all(bytes)?;
        Ok(copy)
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The signature beside `path` checked against `bytes` and `keys`.
fn verify_signature(
    path: &Path,
    bytes: &[u8],
    keys: &[TrustKey],
) -> Result<TrustDecision, TrustRefusal> {
    let mut signature = path.as_os_str().to_owned();
    signature.push(".minisig");
    let signature = PathBuf::from(signature);
    let text = match std::fs::read_to_string(&signature) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TrustRefusal::Unsigned { signature });
        }
        Err(e) => {
            return Err(TrustRefusal::BadSignature {
                signature,
                reason: e.to_string(),
            });
        }
    };
    let parsed =
        minisign_verify::Signature::decode(&text).map_err(|e| TrustRefusal::BadSignature {
            signature: signature.clone(),
            reason: e.to_string(),
        })?;
    let mut refusal = TrustRefusal::UnknownKey;
    for key in keys {
        // Only prehashed signatures (minisign's default since 0.8): the
        // algorithm tag is not signed, so a prehashed signature relabelled
        // as legacy would verify for the 64-byte hash taken as a file.
        match key.key.verify(bytes, &parsed, false) {
            Ok(()) => {
                return Ok(TrustDecision::Signed {
                    key: key.name.clone(),
                    trusted_comment: parsed.trusted_comment().to_owned(),
                });
            }
            Err(minisign_verify::Error::UnexpectedKeyId) => {}
            Err(minisign_verify::Error::InvalidSignature) => {
                refusal = TrustRefusal::Tampered {
                    key: key.name.clone(),
                };
            }
            Err(e) => {
                return Err(TrustRefusal::BadSignature {
                    signature,
                    reason: e.to_string(),
                });
            }
        }
    }
    Err(refusal)
}

/// Refuses `path` if it, or a directory on the way to it (as given and
/// with links resolved), can be written by another user than the host's
/// (or root): owned by another user, writable by every user, or by a group
/// other than the owner's private one. A directory with the sticky bit
/// (`/tmp`) is fine: others cannot rename or remove what they do not own.
fn check_permissions(path: &Path) -> Result<(), TrustRefusal> {
    use std::os::unix::fs::MetadataExt as _;
    let unreadable = |path: &Path| {
        let path = path.to_owned();
        move |source| TrustRefusal::Unreadable { path, source }
    };
    let absolute = std::path::absolute(path).map_err(unreadable(path))?;
    let resolved = std::fs::canonicalize(&absolute).map_err(unreadable(path))?;
    let mut paths: BTreeSet<PathBuf> = absolute.ancestors().map(Path::to_owned).collect();
    paths.extend(resolved.ancestors().map(Path::to_owned));
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    for path in paths {
        let meta = std::fs::metadata(&path).map_err(unreadable(&path))?;
        let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
        if uid != euid && uid != 0 {
            return Err(TrustRefusal::ForeignOwner { path, uid });
        }
        if meta.is_dir() && mode & 0o1000 != 0 {
            continue;
        }
        let who = if mode & 0o002 != 0 {
            Some("every user".to_owned())
        } else if mode & 0o020 != 0 && !is_private_group(meta.gid(), uid) {
            Some(format!("group {}", group_name(meta.gid())))
        } else {
            None
        };
        if let Some(who) = who {
            return Err(TrustRefusal::LoosePermissions { path, who, mode });
        }
    }
    Ok(())
}

/// Whether `gid` is the user-private group of `uid` (the convention of
/// systems whose umask is 002): the user's primary group, named as the
/// user, with no other listed member.
fn is_private_group(gid: u32, uid: u32) -> bool {
    let (Some(user), Some(group)) = (user_entry(uid), group_entry(gid)) else {
        return false;
    };
    user.1 == gid && group.0 == user.0 && group.1.iter().all(|m| *m == user.0)
}

fn group_name(gid: u32) -> String {
    group_entry(gid).map_or_else(|| gid.to_string(), |(name, _)| name)
}

/// A reentrant NSS lookup (`getpwuid_r`, `getgrgid_r`): `call` runs it
/// with an entry, a buffer, the buffer's length and the result pointer,
/// and returns its status; it is retried with a larger buffer on `ERANGE`.
/// `read` sees the entry found, whose strings point into the buffer, and
/// copies out what it needs. `None` if there is no such entry or the
/// lookup failed.
///
/// # Safety
/// `call` behaves as the `get*_r` functions do: it writes only to the
/// entry and the buffer it is given, and on a 0 status sets the result
/// pointer to NULL or to the entry, filled in, whose strings and arrays
/// point into the buffer.
unsafe fn nss_lookup<E, T>(
    mut call: impl FnMut(*mut E, *mut libc::c_char, usize, *mut *mut E) -> libc::c_int,
    read: impl Fn(&E) -> Option<T>,
) -> Option<T> {
    let mut size = 1024;
    while size <= 1 << 20 {
        let mut buffer = vec![0 as libc::c_char; size];
        let mut entry = std::mem::MaybeUninit::<E>::uninit();
        let mut found: *mut E = std::ptr::null_mut();
        let rc = call(
            entry.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        if rc == libc::ERANGE {
            size *= 4;
            continue;
        }
        if rc != 0 || found.is_null() {
            return None;
        }
        // SAFETY: on a 0 status `call` set `found` to `entry`, filled in,
        // whose strings point into `buffer` (this function's contract):
        // both live until `read` returns, which copies out what it keeps.
        return read(unsafe { &*found });
    }
    None
}

/// A NUL-terminated string of an NSS entry, copied; `None` if NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string alive for the call (an entry's
/// field inside [`nss_lookup`]'s `read`).
unsafe fn nss_text(p: *const libc::c_char) -> Option<String> {
    (!p.is_null()).then(|| {
        // SAFETY: non-NULL, and NUL-terminated per this function's contract.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    })
}

/// The name and primary group of user `uid`.
fn user_entry(uid: u32) -> Option<(String, u32)> {
    // SAFETY: `nss_lookup` passes a live entry, a buffer of the given
    // length and a result pointer.
    let call =
        |entry, buffer, len, found| unsafe { libc::getpwuid_r(uid, entry, buffer, len, found) };
    // SAFETY: the entry's strings are inside the lookup's buffer.
    let read = |entry: &libc::passwd| Some((unsafe { nss_text(entry.pw_name) }?, entry.pw_gid));
    // SAFETY: `call` is `getpwuid_r`, which behaves as `nss_lookup`
    // requires (and is thread-safe).
    unsafe { nss_lookup(call, read) }
}

/// The name and listed members of group `gid`.
fn group_entry(gid: u32) -> Option<(String, Vec<String>)> {
    // SAFETY: as in `user_entry`, for `getgrgid_r`.
    let call =
        |entry, buffer, len, found| unsafe { libc::getgrgid_r(gid, entry, buffer, len, found) };
    let read = |entry: &libc::group| {
        // SAFETY: the entry's strings are inside the lookup's buffer.
        let name = unsafe { nss_text(entry.gr_name) }?;
        let mut members = Vec::new();
        let mut member = entry.gr_mem;
        // SAFETY: `gr_mem` is a NULL-terminated array inside the
        // lookup's buffer; each step stays within it until the NULL.
        while !member.is_null() && !unsafe { *member }.is_null() {
            // SAFETY: as the loop condition: a valid, non-NULL element
            // pointing to a string in the buffer.
            members.extend(unsafe { nss_text(*member) });
            // SAFETY: the array continues at least to its NULL.
            member = unsafe { member.add(1) };
        }
        Some((name, members))
    };
    // SAFETY: `call` is `getgrgid_r`, which behaves as `nss_lookup`
    // requires (and is thread-safe).
    unsafe { nss_lookup(call, read) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_and_print_as_sha256sum_does() {
        let empty = Sha256::of(b"");
        let text = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(empty.to_string(), text);
        assert_eq!(text.parse::<Sha256>().unwrap(), empty);
        assert_eq!(text.to_uppercase().parse::<Sha256>().unwrap(), empty);
        let plus = format!("+{}", &text[1..]);
        for bad in [
            "",
            "e3b0",
            &format!("{text}00"),
            &text.replace('e', "g"),
            &plus,
        ] {
            assert!(bad.parse::<Sha256>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_that_is_no_key_is_an_error_naming_it() {
        let err = TrustKey::decode("not a key").unwrap_err();
        assert!(
            err.to_string().contains("not a minisign public key"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("horizon-key-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.pub");
        std::fs::write(&file, "untrusted comment: x\nAAAA\n").unwrap();
        let err = TrustKey::from_file(&file).unwrap_err();
        assert!(err.to_string().contains("bad.pub"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_private_copy_is_a_fresh_0700_directory_removed_on_drop() {
        use std::os::unix::fs::MetadataExt as _;
        let parent = std::env::temp_dir();
        let copy = PrivateCopy::write(&parent, OsStr::new("libx.so"), b"bytes").unwrap();
        let other = PrivateCopy::write(&parent, OsStr::new("libx.so"), b"other").unwrap();
        assert_ne!(copy.dir, other.dir);
        let meta = std::fs::metadata(&copy.dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        // SAFETY: `geteuid` has no preconditions.
        assert_eq!(meta.uid(), unsafe { libc::geteuid() });
        assert_eq!(std::fs::read(&copy.file).unwrap(), b"bytes");
        let dir = copy.dir.clone();
        drop(copy);
        assert!(!dir.exists());
    }

    #[test]
    fn root_and_its_group_are_private_others_are_not() {
        // uid 0 is `root`, whose primary group is `root` (gid 0).
        assert!(is_private_group(0, 0));
        assert!(!is_private_group(4242, 0));
        assert_eq!(group_name(4242), "4242");
    }
}
