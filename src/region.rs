//! Creating and opening the shared-memory file that holds a ring
//! (LAYOUT.md §1): a named file in the shared-memory directory (mode 0600,
//! or 0660 for a group) or an anonymous, sealed `memfd` whose descriptor is
//! passed to peers.
//!
//! The directory is `/dev/shm` unless the environment variable
//! [`SHM_DIR_ENV`] (`ALLOY_SHM_DIR`) names another one — a Kubernetes
//! `emptyDir` with `medium: Memory`, a Docker tmpfs volume — or a
//! [`NamedOptions::dir`] overrides both. The Go module reads the same
//! variable, so every tool of both languages finds the same rings.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
#[cfg(target_os = "linux")]
use rustix::fs::{MemfdFlags, SealFlags};
use thiserror::Error;

use crate::layout::{self, off, Layout, LayoutError, RingConfig};

/// Default directory of named regions.
pub const SHM_DIR: &str = "/dev/shm";

/// Environment variable naming another directory for named regions (read
/// by both languages' libraries, so every Alloy tool honours it).
pub const SHM_DIR_ENV: &str = "ALLOY_SHM_DIR";

/// The directory named regions live in: `$ALLOY_SHM_DIR` when set and not
/// empty, else [`SHM_DIR`].
pub fn shm_dir() -> PathBuf {
    match std::env::var_os(SHM_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(SHM_DIR),
    }
}

/// Where and how a named region is created or opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedOptions {
    /// Directory of the region file; `None`: [`shm_dir`].
    pub dir: Option<PathBuf>,
    /// Create only: give this group read-write access (mode 0660 instead
    /// of 0600), so consumers of other users in the group can attach
    /// (LAYOUT.md §1). The creator must be in the group (or root).
    pub group: Option<u32>,
    /// Open only: accept a region owned by another user whatever its mode
    /// (a group-shared region of a group we are in is accepted anyway).
    pub allow_foreign_owner: bool,
    /// Create only: back the region with huge pages (anonymous regions
    /// and named ones; see [`HugePages`]).
    pub huge_pages: HugePages,
    /// Pre-fault the mapping so the first messages take no page faults: a
    /// region being created is populated writable (its pages are new and
    /// zero, nothing is overwritten); an open of a live region populates
    /// read-only, never writing a byte (`MADV_POPULATE_WRITE` /
    /// `MADV_POPULATE_READ`, Linux 5.14; older kernels skip it).
    pub prefault: bool,
}

/// Whether a region's memory comes from huge pages (doc/README.md, "Huge
/// pages, pre-faulting and NUMA"). The byte layout is the same either way
/// (LAYOUT.md §1); the file is rounded up to a whole number of huge pages.
///
/// An anonymous region uses a `MFD_HUGETLB` memfd, which draws on the pages
/// reserved in `/proc/sys/vm/nr_hugepages`. A named region gets huge pages
/// from its directory: a hugetlbfs mount (`mount -t hugetlbfs none DIR`,
/// then [`NamedOptions::dir`] or `ALLOY_SHM_DIR`) always gives them (and
/// any region made there uses them, whatever this option says). A tmpfs
/// mounted with `huge=within_size` or `huge=always` gives transparent huge
/// pages on its own, as best effort, so `Require` refuses a directory that
/// is not hugetlbfs and `Prefer` takes what the directory gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HugePages {
    /// Normal pages (a hugetlbfs directory still gives huge ones).
    #[default]
    Off,
    /// Huge pages when the system has them reserved, else normal pages.
    Prefer,
    /// Huge pages, or [`RegionError::HugePages`] saying what to reserve or
    /// mount.
    Require,
}

impl NamedOptions {
    /// The directory these options name.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(shm_dir)
    }
}

/// Resolves `--group`-style input: a numeric gid, or a group name looked
/// up in `/etc/group` (as Go's `os/user` does without cgo).
pub fn resolve_group(group: &str) -> Result<u32, RegionError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = std::fs::read_to_string("/etc/group").map_err(io_err("reading /etc/group"))?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(name, _)| *name == group)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| RegionError::UnknownGroup(group.to_string()))
}

/// Errors creating or opening a region.
#[derive(Debug, Error)]
pub enum RegionError {
    /// The region's bytes are not a valid Alloy layout.
    #[error("{name}: {source}")]
    Layout {
        /// Region name or fd description.
        name: String,
        /// What is wrong with it.
        #[source]
        source: LayoutError,
    },
    /// The name is not 1–200 bytes of `[A-Za-z0-9._-]` not starting with `.`.
    #[error(
        "invalid ring name {0:?}: use 1-200 characters of [A-Za-z0-9._-], not starting with '.'"
    )]
    InvalidName(String),
    /// `create` found an existing region with that name.
    #[error("ring {0:?} already exists")]
    AlreadyExists(String),
    /// The directory has less free space than the region needs (a small
    /// Docker `/dev/shm`, a full tmpfs).
    #[error(
        "ring {name:?} needs {needed} bytes but {dir} has {free} free; on Docker raise --shm-size \
         (or mount a bigger tmpfs and set ALLOY_SHM_DIR), on Kubernetes mount an emptyDir with \
         medium: Memory and a sizeLimit"
    )]
    NoSpace {
        /// Region name.
        name: String,
        /// The directory.
        dir: String,
        /// Bytes the region needs (its `total_size`).
        needed: u64,
        /// Bytes free in the directory's filesystem.
        free: u64,
    },
    /// Huge pages were required (or the directory is a hugetlbfs mount)
    /// and the system cannot provide them; the text names the fix
    /// (`/proc/sys/vm/nr_hugepages`, a hugetlbfs mount).
    #[error("{0}")]
    HugePages(String),
    /// `resolve_group` found no such group.
    #[error("no group named {0:?} in /etc/group (give a numeric gid instead)")]
    UnknownGroup(String),
    /// `open` found no region with that name.
    #[error("ring {0:?} does not exist")]
    NotFound(String),
    /// The file is owned by another user and was not explicitly allowed.
    #[error("ring {name:?} is owned by uid {owner}, not by this user (uid {me})")]
    ForeignOwner {
        /// Region name.
        name: String,
        /// Owner of the file.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// An fd received from a peer is not a memfd carrying the shrink, grow
    /// and seal seals that protect against SIGBUS.
    #[error("fd is not a memfd sealed against shrink/grow/reseal; refusing to map it")]
    NotSealed,
    /// This system is not Linux: the crate compiles elsewhere (so a service
    /// that deploys on Linux builds on a macOS laptop), but rings need the
    /// futex, memfd and `/dev/shm` (doc/README.md, "Other systems").
    #[error(
        "alloy rings need Linux (futex, memfd); this is {}/{}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )]
    UnsupportedPlatform,
    /// Any other system error.
    #[error("{what}: {source}")]
    Io {
        /// The operation that failed.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A memfd of `size` bytes, reserved, sealed against shrink, grow and
/// further sealing.
#[cfg(target_os = "linux")]
fn sealed_memfd(label: &str, size: usize) -> Result<OwnedFd, RegionError> {
    let fd = rustix::fs::memfd_create(
        format!("alloy:{label}"),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| io_err("memfd_create")(e.into()))?;
    rustix::fs::ftruncate(&fd, size as u64).map_err(|e| io_err("sizing memfd")(e.into()))?;
    reserve(&fd, size, None)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(|e| io_err("sealing memfd")(e.into()))?;
    Ok(fd)
}

#[cfg(not(target_os = "linux"))]
fn sealed_memfd(_label: &str, _size: usize) -> Result<OwnedFd, RegionError> {
    Err(RegionError::UnsupportedPlatform)
}

/// A sealed `MFD_HUGETLB` memfd of `size` bytes rounded up to whole huge
/// pages (the default huge page size), all of them reserved now.
#[cfg(target_os = "linux")]
fn sealed_huge_memfd(label: &str, size: usize) -> Result<OwnedFd, RegionError> {
    let fd = rustix::fs::memfd_create(
        format!("alloy:{label}"),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB,
    )
    .map_err(|e| RegionError::HugePages(format!("no huge-page memfd (MFD_HUGETLB): {e}")))?;
    let page = rustix::fs::fstat(&fd)
        .map_err(|e| io_err("fstat")(e.into()))?
        .st_blksize as usize;
    let len = round_up(size, page);
    rustix::fs::ftruncate(&fd, len as u64).map_err(|e| io_err("sizing memfd")(e.into()))?;
    match rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
        Ok(()) => {}
        Err(rustix::io::Errno::NOSPC) => return Err(huge_pages_short(len, page)),
        Err(e) => return Err(io_err("reserving huge pages")(e.into())),
    }
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)
        .map_err(|e| io_err("sealing memfd")(e.into()))?;
    Ok(fd)
}

#[cfg(not(target_os = "linux"))]
fn sealed_huge_memfd(_label: &str, _size: usize) -> Result<OwnedFd, RegionError> {
    Err(RegionError::UnsupportedPlatform)
}

/// The error of a region that needs `len` bytes of huge pages of `page`
/// bytes when fewer are free.
fn huge_pages_short(len: usize, page: usize) -> RegionError {
    let pages = len.div_ceil(page.max(1));
    RegionError::HugePages(format!(
        "a {len}-byte huge-page ring needs {pages} free huge pages of {} KiB; reserve them as root \
         (echo N > /proc/sys/vm/nr_hugepages, see HugePages_Free in /proc/meminfo) or use \
         HugePages::Prefer to fall back to normal pages",
        page / 1024
    ))
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to.max(1)) * to.max(1)
}

/// `statfs` magic of hugetlbfs (linux/magic.h).
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// The huge page size of `dir` if it is a hugetlbfs mount, else `None`.
fn hugetlbfs_page(dir: &Path) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        let st = rustix::fs::statfs(dir).ok()?;
        #[allow(clippy::unnecessary_cast)]
        (st.f_type as i64 == HUGETLBFS_MAGIC).then_some(st.f_bsize as usize)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dir, HUGETLBFS_MAGIC);
        None
    }
}

/// Populates the page tables of `len` bytes at `addr` (see
/// [`NamedOptions::prefault`]): `write` for a region being created, else
/// read-only. Best effort: a kernel without `MADV_POPULATE_*` (before
/// 5.14) leaves the pages to fault in on first touch.
fn prefault(addr: *mut u8, len: usize, write: bool) {
    #[cfg(target_os = "linux")]
    {
        use rustix::mm::Advice;
        let advice = if write {
            Advice::LinuxPopulateWrite
        } else {
            Advice::LinuxPopulateRead
        };
        // SAFETY: `addr..addr+len` is one of our live mappings; populating
        // only faults pages in (a write-populate of a new region touches no
        // byte's value; a read-populate writes nothing).
        if let Err(e) = unsafe { rustix::mm::madvise(addr.cast(), len, advice) } {
            tracing::debug!(error = %e, "pre-faulting the ring skipped");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len, write);
}

/// Not a memfd (EINVAL) or missing a seal: `NotSealed`.
#[cfg(target_os = "linux")]
fn check_sealed(fd: &OwnedFd) -> Result<(), RegionError> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|_| RegionError::NotSealed)?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL) {
        return Err(RegionError::NotSealed);
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn check_sealed(_fd: &OwnedFd) -> Result<(), RegionError> {
    Err(RegionError::UnsupportedPlatform)
}

/// `Err(UnsupportedPlatform)` on every system but Linux: the first step of
/// every entry point that creates, opens or removes a region.
fn unsupported_platform() -> Result<(), RegionError> {
    if cfg!(target_os = "linux") {
        Ok(())
    } else {
        Err(RegionError::UnsupportedPlatform)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RegionError {
    let what = what.into();
    move |source| RegionError::Io { what, source }
}

/// Allocates every page of a new region up front, so a full `/dev/shm`
/// (tmpfs) fails here with ENOSPC instead of killing a process with SIGBUS
/// when it first touches a page that cannot be allocated. `name`/`dir`
/// label the [`RegionError::NoSpace`] error of a named region.
fn reserve(fd: impl AsFd, len: usize, named: Option<(&str, &Path)>) -> Result<(), RegionError> {
    let fd = fd.as_fd();
    #[cfg(not(target_os = "linux"))]
    return {
        let _ = (fd, len, named);
        Err(RegionError::UnsupportedPlatform)
    };
    #[cfg(target_os = "linux")]
    match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, len as u64) {
        Ok(()) => Ok(()),
        // A filesystem without fallocate: keep the sparse file.
        Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
        Err(rustix::io::Errno::NOSPC) if named.is_some() => {
            let (name, dir) = named.unwrap_or(("", Path::new("")));
            let free = rustix::fs::fstatvfs(fd).map_or(0, |v| v.f_bavail * v.f_frsize);
            Err(no_space(name, dir, len as u64, free))
        }
        Err(e) => Err(RegionError::Io {
            what: format!("reserving {len} bytes of shared memory (is /dev/shm full?)"),
            source: e.into(),
        }),
    }
}

fn no_space(name: &str, dir: &Path, needed: u64, free: u64) -> RegionError {
    RegionError::NoSpace {
        name: name.to_string(),
        dir: dir.display().to_string(),
        needed,
        free,
    }
}

/// Refuses up front a region that cannot fit in `dir`'s filesystem, before
/// a file is made. A filesystem reporting no size at all (tmpfs with
/// `size=0`, i.e. unlimited) is not checked; `fallocate` still is.
fn check_space(name: &str, dir: &Path, needed: u64) -> Result<(), RegionError> {
    let v = rustix::fs::statvfs(dir).map_err(|e| RegionError::Io {
        what: format!("checking the shared-memory directory {}", dir.display()),
        source: e.into(),
    })?;
    let free = v.f_bavail.saturating_mul(v.f_frsize);
    if v.f_blocks != 0 && free < needed {
        return Err(no_space(name, dir, needed, free));
    }
    Ok(())
}

/// Whether this process's effective or supplementary groups include `gid`.
fn in_group(gid: u32) -> bool {
    rustix::process::getegid().as_raw() == gid
        || rustix::process::getgroups()
            .map(|gs| gs.iter().any(|g| g.as_raw() == gid))
            .unwrap_or(false)
}

/// A group-shared region (LAYOUT.md §1): read-write for owner and group,
/// nothing for others.
fn group_shared(mode: u32) -> bool {
    mode & 0o777 == 0o660
}

/// A mapped Alloy region. Cloning the mapping is done by sharing the
/// `Region` (it is `Send + Sync`); the mapping lives until the last owner
/// drops it.
pub struct Region {
    map: MmapRaw,
    /// A second, `PROT_READ` mapping of the same file that consumers read
    /// payloads through (made by [`Region::map_read_only`] when the first
    /// consumer attaches), so a consumer writing into a slot faults instead
    /// of corrupting a message other readers see.
    ro: OnceLock<MmapRaw>,
    file: File,
    layout: Layout,
    name: Option<String>,
    /// Pre-fault the read-only mapping when it is made.
    prefault: bool,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.name)
            .field("total_size", &self.layout.total_size)
            .finish()
    }
}

/// The hidden name a region is made under before it is linked to `name`,
/// never a valid ring name (leading '.'): pid, the clock's nanoseconds and a
/// counter, so a restarted creator with the same pid (pid 1 in a container)
/// or one in another pid namespace does not meet a leftover of an earlier
/// run; the caller still retries on a clash.
fn temp_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        ".{name}.{}.{nanos:x}{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Checks a ring name (LAYOUT.md §1).
pub fn validate_name(name: &str) -> Result<(), RegionError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RegionError::InvalidName(name.to_string()))
    }
}

/// Path of the named region `name` in [`shm_dir`].
pub fn named_path(name: &str) -> PathBuf {
    shm_dir().join(name)
}

/// The fixed identity values written at creation; tests inject constants to
/// reproduce the shared test vectors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub pid: u32,
    pub realtime_ns: u64,
}

impl Stamp {
    pub(crate) fn now() -> Stamp {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
        Stamp {
            pid: std::process::id(),
            realtime_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }
}

impl Region {
    /// Creates the named region `<shm_dir>/<name>` (mode 0600, fails if it
    /// exists) and initialises its header for `config`.
    pub fn create_named(name: &str, config: &RingConfig) -> Result<Region, RegionError> {
        Self::create_named_opts(name, config, &NamedOptions::default())
    }

    /// Like [`Region::create_named`], in `opts.dir` and shared with
    /// `opts.group` (mode 0660) when set.
    pub fn create_named_opts(
        name: &str,
        config: &RingConfig,
        opts: &NamedOptions,
    ) -> Result<Region, RegionError> {
        Self::create_named_stamped(name, config, opts, Stamp::now())
    }

    pub(crate) fn create_named_stamped(
        name: &str,
        config: &RingConfig,
        opts: &NamedOptions,
        stamp: Stamp,
    ) -> Result<Region, RegionError> {
        unsupported_platform()?;
        validate_name(name)?;
        let layout = Layout::compute(*config).map_err(|source| RegionError::Layout {
            name: name.to_string(),
            source,
        })?;
        let dir = opts.dir();
        let path = dir.join(name);
        // Early and cheap (the link below is what decides a race).
        if path.exists() {
            return Err(RegionError::AlreadyExists(name.to_string()));
        }
        let huge = hugetlbfs_page(&dir);
        if huge.is_none() && opts.huge_pages == HugePages::Require {
            return Err(RegionError::HugePages(format!(
                "huge pages required for ring {name:?} but {} is not a hugetlbfs mount: reserve \
                 pages (echo N > /proc/sys/vm/nr_hugepages), mount one (mount -t hugetlbfs none \
                 /dev/hugepages) and give it as the ring's directory or ALLOY_SHM_DIR",
                dir.display()
            )));
        }
        // hugetlbfs files are sized and mapped in whole huge pages.
        let len = round_up(layout.total_size, huge.unwrap_or(1));
        check_space(name, &dir, len as u64)?;
        // The region is made under a hidden temporary name (a leading '.'
        // is never a ring name) and linked into place only once its mode,
        // group, size and header are final: an opener never sees a 0600
        // file a group member is refused ("not open to uid") or a file
        // without its magic. `link` fails if the name exists, as O_EXCL
        // did.
        let (tmp, file) = {
            let mut attempt = 0;
            loop {
                let tmp = dir.join(temp_name(name));
                match OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc_o_cloexec())
                    .open(&tmp)
                {
                    Ok(f) => break (tmp, f),
                    // Another creator's temporary file, or a leftover.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                        attempt += 1
                    }
                    Err(e) => {
                        return Err(RegionError::Io {
                            what: format!("creating {}", tmp.display()),
                            source: e,
                        })
                    }
                }
            }
        };
        let init = || -> Result<Region, RegionError> {
            if let Some(gid) = opts.group {
                share_with_group(&file, name, gid)?;
            }
            file.set_len(len as u64)
                .map_err(io_err(format!("sizing ring {name:?}")))?;
            reserve(&file, len, Some((name, &dir))).map_err(|e| match (huge, e) {
                (Some(page), RegionError::NoSpace { .. }) => huge_pages_short(len, page),
                (_, e) => e,
            })?;
            let region = Self::init(
                file.try_clone().map_err(io_err("dup"))?,
                layout,
                Some(name.into()),
                stamp,
                opts.prefault,
            )?;
            std::fs::hard_link(&tmp, &path).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => RegionError::AlreadyExists(name.to_string()),
                _ => RegionError::Io {
                    what: format!("linking {} to {}", tmp.display(), path.display()),
                    source: e,
                },
            })?;
            Ok(region)
        };
        let r = init();
        let _ = std::fs::remove_file(&tmp);
        match r {
            // Racing creators both size their file before one links it: the
            // loser may run out of room first; the ring exists, say so (an
            // open-or-create then opens it).
            Err(RegionError::NoSpace { .. } | RegionError::HugePages(_)) if path.exists() => {
                Err(RegionError::AlreadyExists(name.to_string()))
            }
            r => r,
        }
    }

    /// Creates an anonymous region in a sealed `memfd` (shrink, grow and
    /// further sealing forbidden). Share it with [`Region::fd`]: let a child
    /// inherit the descriptor, or send it over a Unix socket (`SCM_RIGHTS`).
    pub fn create_anonymous(label: &str, config: &RingConfig) -> Result<Region, RegionError> {
        Self::create_anonymous_stamped(label, config, Stamp::now())
    }

    /// Like [`Region::create_anonymous`], with `opts.huge_pages` and
    /// `opts.prefault` (its directory, group and owner fields do not apply).
    pub fn create_anonymous_opts(
        label: &str,
        config: &RingConfig,
        opts: &NamedOptions,
    ) -> Result<Region, RegionError> {
        Self::create_anonymous_with(label, config, opts, Stamp::now())
    }

    pub(crate) fn create_anonymous_stamped(
        label: &str,
        config: &RingConfig,
        stamp: Stamp,
    ) -> Result<Region, RegionError> {
        Self::create_anonymous_with(label, config, &NamedOptions::default(), stamp)
    }

    fn create_anonymous_with(
        label: &str,
        config: &RingConfig,
        opts: &NamedOptions,
        stamp: Stamp,
    ) -> Result<Region, RegionError> {
        unsupported_platform()?;
        let layout = Layout::compute(*config).map_err(|source| RegionError::Layout {
            name: format!("memfd {label:?}"),
            source,
        })?;
        let fd = match opts.huge_pages {
            HugePages::Off => sealed_memfd(label, layout.total_size)?,
            HugePages::Require => sealed_huge_memfd(label, layout.total_size)?,
            HugePages::Prefer => sealed_huge_memfd(label, layout.total_size).or_else(|e| {
                tracing::info!(error = %e, "no huge pages; the ring uses normal pages");
                sealed_memfd(label, layout.total_size)
            })?,
        };
        Self::init(File::from(fd), layout, None, stamp, opts.prefault)
    }

    fn init(
        file: File,
        layout: Layout,
        name: Option<String>,
        stamp: Stamp,
        prefault_pages: bool,
    ) -> Result<Region, RegionError> {
        let map = MmapRaw::map_raw(&file).map_err(io_err("mmap"))?;
        if prefault_pages {
            // A new region: its pages are zero and nobody else maps it
            // yet, so populating them writable overwrites nothing.
            prefault(map.as_mut_ptr(), map.len(), true);
        }
        let region = Region {
            map,
            ro: OnceLock::new(),
            file,
            layout,
            name,
            prefault: prefault_pages,
        };
        // SAFETY: nobody else can have mapped the region yet with a valid
        // magic (it is zero until the store below), so we are the only
        // writer of line 0; the slice covers the first 64 mapped bytes.
        let line0 = unsafe { std::slice::from_raw_parts_mut(region.map.as_mut_ptr(), 64) };
        layout::write_header(line0, &layout, stamp.pid, stamp.realtime_ns);
        // Release: pairs with the Acquire load in `open_file`, so an opener
        // that sees the magic sees the whole configuration line.
        region
            .u64_at(off::MAGIC)
            .store(layout::MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Opens the existing named region `<shm_dir>/<name>`; it must be a
    /// regular file owned by this user, or shared (mode 0660) with a group
    /// this process is in.
    pub fn open_named(name: &str) -> Result<Region, RegionError> {
        Self::open_named_opts(name, &NamedOptions::default())
    }

    /// Like [`Region::open_named`]; `allow_foreign_owner` accepts a region
    /// created by another user (who granted access through its mode).
    pub fn open_named_with(name: &str, allow_foreign_owner: bool) -> Result<Region, RegionError> {
        Self::open_named_opts(
            name,
            &NamedOptions {
                allow_foreign_owner,
                ..NamedOptions::default()
            },
        )
    }

    /// Opens the named region in `opts.dir` (see [`Region::open_named`]).
    pub fn open_named_opts(name: &str, opts: &NamedOptions) -> Result<Region, RegionError> {
        unsupported_platform()?;
        validate_name(name)?;
        let path = opts.dir().join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc_o_cloexec() | libc_o_nofollow())
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => RegionError::NotFound(name.to_string()),
                io::ErrorKind::PermissionDenied => RegionError::Io {
                    what: denied_text(name, &path),
                    source: e,
                },
                _ => RegionError::Io {
                    what: format!("opening {}", path.display()),
                    source: e,
                },
            })?;
        let meta = file.metadata().map_err(io_err("fstat"))?;
        if !meta.file_type().is_file() {
            return Err(RegionError::Layout {
                name: name.to_string(),
                source: LayoutError::InvalidLayout("not a regular file".into()),
            });
        }
        let me = rustix::process::geteuid().as_raw();
        let shared_with_us = group_shared(meta.mode()) && in_group(meta.gid());
        if meta.uid() != me && !opts.allow_foreign_owner && !shared_with_us {
            return Err(RegionError::ForeignOwner {
                name: name.to_string(),
                owner: meta.uid(),
                me,
            });
        }
        Self::open_file(file, Some(name.to_string()), opts.prefault)
    }

    /// Opens a region from a descriptor inherited from or sent by its
    /// creator. A memfd must carry the shrink and grow seals.
    pub fn from_fd(fd: OwnedFd) -> Result<Region, RegionError> {
        // Not a memfd (EINVAL) or missing a seal: a peer could resize it
        // under us and SIGBUS every reader.
        unsupported_platform()?;
        check_sealed(&fd)?;
        Self::open_file(File::from(fd), None, false)
    }

    fn open_file(
        file: File,
        name: Option<String>,
        prefault_pages: bool,
    ) -> Result<Region, RegionError> {
        let label = name.clone().unwrap_or_else(|| "fd".into());
        let lerr = |source| RegionError::Layout {
            name: label.clone(),
            source,
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let size = file.metadata().map_err(io_err("fstat"))?.len();
            if size < layout::HEADER_SIZE as u64 && Instant::now() < deadline {
                // The creator may be between O_EXCL and ftruncate.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if size < layout::HEADER_SIZE as u64 {
                return Err(lerr(LayoutError::Truncated {
                    size,
                    needed: layout::HEADER_SIZE as u64,
                }));
            }
            let map = MmapRaw::map_raw(&file).map_err(io_err("mmap"))?;
            // SAFETY: the mapping is at least HEADER_SIZE bytes (checked
            // above; a sealed or 0600 file cannot shrink under us) and
            // offset 0 is 8-aligned because mappings are page-aligned.
            let magic = unsafe { &*(map.as_ptr() as *const AtomicU64) };
            // Acquire: pairs with the creator's Release store of the magic.
            if magic.load(Ordering::Acquire) == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let mut line0 = [0u8; 64];
            // SAFETY: line 0 is immutable once the magic is set; we copy it
            // out of the mapping (at least 256 bytes long).
            unsafe { std::ptr::copy_nonoverlapping(map.as_ptr(), line0.as_mut_ptr(), 64) };
            let layout = Layout::parse(&line0, size).map_err(lerr)?;
            if prefault_pages {
                // A live region: read-only, so no byte is written.
                prefault(map.as_mut_ptr(), map.len(), false);
            }
            return Ok(Region {
                map,
                ro: OnceLock::new(),
                file,
                layout,
                name,
                prefault: prefault_pages,
            });
        }
    }

    /// Removes the named region `name` from [`shm_dir`]. Processes that
    /// have it mapped keep using it; new `open`s fail.
    pub fn remove_named(name: &str) -> Result<(), RegionError> {
        Self::remove_named_in(&shm_dir(), name)
    }

    /// Removes the named region `name` from `dir`.
    pub fn remove_named_in(dir: &Path, name: &str) -> Result<(), RegionError> {
        unsupported_platform()?;
        validate_name(name)?;
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RegionError::NotFound(name.to_string()),
            _ => RegionError::Io {
                what: format!("removing {}", path.display()),
                source: e,
            },
        })
    }

    /// The region's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The ring name, for named regions.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The descriptor of the region's file, to hand to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Base address of the mapping.
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Maps the region a second time, read-only, for consumers to read
    /// payloads through (LAYOUT.md §1: consumers write nothing in the slot
    /// area). Idempotent; concurrent callers keep one mapping.
    pub(crate) fn map_read_only(&self) -> Result<(), RegionError> {
        if self.ro.get().is_none() {
            // The read-write mapping's length: a hugetlbfs file is mapped
            // (and unmapped) in whole huge pages.
            let map = MmapOptions::new()
                .len(self.map.len())
                .map_raw_read_only(&self.file)
                .map_err(io_err("mmap read-only"))?;
            if self.prefault {
                prefault(map.as_mut_ptr(), map.len(), false);
            }
            // A racing caller's mapping may have won; ours is then dropped.
            let _ = self.ro.set(map);
        }
        Ok(())
    }

    /// Base address consumers read payloads at: the read-only mapping once
    /// the first consumer attached made it, else the read-write one.
    pub fn read_base(&self) -> *const u8 {
        self.ro.get().map_or(self.map.as_ptr(), |m| m.as_ptr())
    }

    /// A copy of the whole region's bytes (for tests, vectors and tools).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.layout.total_size];
        // SAFETY: the mapping is at least total_size bytes (validated at
        // open/create). Concurrent writers may change bytes while we copy;
        // the copy is a best-effort picture, used only for inspection.
        unsafe { std::ptr::copy_nonoverlapping(self.base(), v.as_mut_ptr(), v.len()) };
        v
    }

    /// The atomic u64 at byte offset `at` of the mapping.
    ///
    /// Panics if `at` is not 8-aligned or out of bounds; callers pass
    /// offsets derived from the validated layout.
    pub(crate) fn u64_at(&self, at: usize) -> &AtomicU64 {
        assert!(at % 8 == 0 && at + 8 <= self.layout.total_size.max(layout::HEADER_SIZE));
        // SAFETY: in bounds and aligned (asserted); the mapping lives as long
        // as `self`; all concurrent access to this word, from any process,
        // is atomic per LAYOUT.md, and AtomicU64 has u64's layout.
        unsafe { &*(self.base().add(at) as *const AtomicU64) }
    }

    /// `count` atomic u64 words from byte offset `at` of the mapping.
    ///
    /// Panics if `at` is not 8-aligned or the words are out of bounds.
    pub(crate) fn u64s_at(&self, at: usize, count: usize) -> &[AtomicU64] {
        assert!(at % 8 == 0 && at + count * 8 <= self.layout.total_size.max(layout::HEADER_SIZE));
        // SAFETY: as for `u64_at`, for each of the `count` words.
        unsafe { std::slice::from_raw_parts(self.base().add(at) as *const AtomicU64, count) }
    }

    /// The atomic u32 at byte offset `at` of the mapping.
    pub(crate) fn u32_at(&self, at: usize) -> &AtomicU32 {
        assert!(at % 4 == 0 && at + 4 <= self.layout.total_size.max(layout::HEADER_SIZE));
        // SAFETY: as for `u64_at`.
        unsafe { &*(self.base().add(at) as *const AtomicU32) }
    }
}

/// Gives group `gid` read-write access to a region file being created:
/// owner and group may map it, nobody else (mode 0660).
fn share_with_group(file: &File, name: &str, gid: u32) -> Result<(), RegionError> {
    let gid = rustix::fs::Gid::from_raw(gid);
    rustix::fs::fchown(file, None, Some(gid)).map_err(|e| RegionError::Io {
        what: format!(
            "giving ring {name:?} to group {} (the creator must be root or in that group)",
            gid.as_raw()
        ),
        source: e.into(),
    })?;
    rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(0o660))
        .map_err(|e| io_err(format!("chmod 0660 ring {name:?}"))(e.into()))
}

/// The text of a refused open: who owns the file, its group and mode, and
/// who we are, so the operator sees which group to join.
fn denied_text(name: &str, path: &Path) -> String {
    let me = rustix::process::geteuid().as_raw();
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "ring {name:?} ({}: owner uid {}, group gid {}, mode {:o}) is not open to uid {me}; \
             a group-shared ring (mode 660) is open to members of its group",
            path.display(),
            m.uid(),
            m.gid(),
            m.mode() & 0o777
        ),
        Err(_) => format!("opening {}", path.display()),
    }
}

fn libc_o_cloexec() -> i32 {
    rustix::fs::OFlags::CLOEXEC.bits() as i32
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}
