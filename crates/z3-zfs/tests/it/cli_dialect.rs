//! `ZfsCli` against scripted stand-ins for `zfs` that answer like OpenZFS or zfs-fuse 0.7,
//! to test dialect detection and its caching without a pool.
//!
//! The scripts are fixed literals. They receive the real argument vector and never evaluate
//! it; they log each invocation to `<script>.log` so tests can see which commands ran.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use z3_core::{DatasetName, FullSnapshotName};
use z3_zfs::{ErrorKind, EstimateMethod, ReceiveOptions, Zfs, ZfsCli};

/// zfs-fuse 0.7: no `list -p`, no `send -n`; texts from docs/compatibility.md, "zfs-fuse 0.7".
const LEGACY: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> "$0.log"
for a in "$@"; do last=$a; done
case "$1" in
list)
  for a in "$@"; do
    if [ "$a" = "-p" ]; then
      printf "invalid option 'p'\nusage:\n\tlist [-rH][-d max] [-o property[,...]] [-t type[,...]] [-s property] ...\n" >&2
      exit 2
    fi
  done
  for a in "$@"; do
    if [ "$a" = "bookmark" ]; then
      printf "invalid type 'bookmark'\nusage:\n\tlist [-rH][-d max] [-o property[,...]] [-t type[,...]] [-s property] ...\n" >&2
      exit 2
    fi
  done
  case "$last" in pool/missing|*@missing)
    printf "cannot open '%s': dataset does not exist\n" "$last" >&2
    exit 1
  esac
  printf '%s\n' "$last"
  ;;
set|inherit)
  case "$last" in *@missing)
    printf "cannot open '%s': dataset does not exist\n" "$last" >&2
    exit 1
  esac
  ;;
hold)
  case "$last" in
  *@missing) printf "cannot hold '%s': dataset does not exist\n" "$last" >&2; exit 1 ;;
  *@held) printf "cannot hold '%s': tag already exists on this dataset\n" "$last" >&2; exit 1 ;;
  esac
  ;;
release)
  case "$last" in
  *@missing|*@unheld) printf "cannot release '%s' from '%s': dataset does not exist\n" "$2" "$last" >&2; exit 1 ;;
  *@other) printf "cannot release '%s' from '%s': no such tag on this dataset\n" "$2" "$last" >&2; exit 1 ;;
  *@weird) printf "cannot release '%s' from '%s': permission denied\n" "$2" "$last" >&2; exit 1 ;;
  esac
  ;;
bookmark)
  printf "unrecognized command 'bookmark'\nusage: zfs command args ...\nwhere 'command' is one of the following:\n" >&2
  exit 2
  ;;
get)
  if [ "$last" = "pool/missing" ]; then
    printf "cannot open '%s': dataset does not exist\n" "$last" >&2
    exit 1
  fi
  case "$*" in
  *referenced,compressratio*) printf '647168\n1.50x\n' ;;
  *z3:hold:z3*) printf 'pool/fs@b\tz3:hold:z3\ton\npool/fs@sp ace\tz3:hold:z3\ton\npool/fs/child@b\tz3:hold:z3\ton\npool/fs@..\tz3:hold:z3\ton\n' ;;
  *) printf 'pool/fs\tguid\t2022835183268112203\npool/fs\tcreatetxg\t6\npool/fs\tcreation\t1796425930\npool/fs@b\tguid\t17932715693616688049\npool/fs@b\tcreatetxg\t16\npool/fs@b\tcreation\t1796425946\npool/fs@sp ace\tguid\t16655346559538300140\npool/fs@sp ace\tcreatetxg\t11\npool/fs@sp ace\tcreation\t1796425940\npool/fs/child\tguid\t5\npool/fs/child\tcreatetxg\t20\n' ;;
  esac
  ;;
send)
  case "$2" in
  -nvP|-n)
    printf "invalid option 'n'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n" >&2
    exit 2
    ;;
  -w|-c|-L|-e)
    printf "invalid option '%s'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n" "${2#-}" >&2
    exit 2
    ;;
  esac
  printf 'STREAM'
  printf 'warning: cannot send %s: Broken pipe\n' "$last" >&2
  exit 1
  ;;
receive)
  cat >/dev/null
  printf 'cannot receive: invalid stream (bad magic number)\n' >&2
  exit 1
  ;;
esac
"#;

/// OpenZFS 2.x: `list -p` and `send -nvP` work.
const MODERN: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> "$0.log"
case "$1" in
list)
  case "$*" in
  *bookmark*) printf 'pool/fs#a\t16655346559538300140\t11\t1795735040\npool/fs/child#x\t1\t2\t3\n' ;;
  *) printf 'pool/fs@a\t16655346559538300140\t11\t1795735040\npool/fs@b\t17932715693616688049\t16\t1795735041\n' ;;
  esac
  ;;
send)
  case "$*" in
  *-nvP*) printf 'incremental\tpool/fs@a\tpool/fs@b\t4096\nsize\t4096\n' ;;
  *) printf 'STREAM' ;;
  esac
  ;;
bookmark)
  if [ "$3" = "pool/fs#a" ]; then
    printf "cannot create bookmark 'pool/fs#a': bookmark exists\n" >&2
    exit 1
  fi
  ;;
receive) cat >/dev/null ;;
esac
"#;

/// OpenZFS 0.7: `send -c -L -e` exist, `-w` (0.8) does not; a missing snapshot fails the
/// dry run like OpenZFS 2.x.
const OPENZFS_07: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> "$0.log"
for a in "$@"; do last=$a; done
case "$1" in
send)
  for a in "$@"; do
    if [ "$a" = "-w" ]; then
      printf "invalid option 'w'\nusage:\n\tsend [-DnPpRvLec] [-[iI] snapshot] <snapshot>\n" >&2
      exit 2
    fi
  done
  if [ "$last" = "pool/fs@missing" ]; then
    printf "cannot open 'pool/fs@missing': dataset does not exist\n" >&2
    exit 1
  fi
  case "$2" in
  -n) printf 'full\t%s\t4096\nsize\t4096\n' "$last" ;;
  *) printf 'STREAM' ;;
  esac
  ;;
esac
"#;

struct Script {
    path: PathBuf,
}

impl Script {
    fn new(name: &str, body: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("z3-zfs-it-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _ = std::fs::remove_file(Self::log_path(&path));
        // Another test thread may be forking while the file was open for writing, which
        // makes exec fail with ETXTBSY for a moment; wait until it can run.
        for _ in 0..100 {
            match std::process::Command::new(&path).arg("probe").status() {
                Err(e) if e.raw_os_error() == Some(26) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => {
                    other.unwrap();
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(Self::log_path(&path));
        Self { path }
    }

    fn log_path(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".log");
        PathBuf::from(p)
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(Self::log_path(&self.path))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Self::log_path(&self.path));
        let _ = std::fs::remove_file(&self.path);
    }
}

fn ds(name: &str) -> DatasetName {
    DatasetName::new(name).unwrap()
}

fn snap(name: &str) -> FullSnapshotName {
    FullSnapshotName::parse(name).unwrap()
}

#[tokio::test]
async fn legacy_list_falls_back_once_and_remembers() {
    let script = Script::new("zfs-legacy-list", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    for _ in 0..2 {
        let snaps = zfs.list_snapshots(&ds("pool/fs")).await.unwrap();
        let names: Vec<_> = snaps.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(names, ["pool/fs@sp ace", "pool/fs@b"]);
        assert_eq!(snaps[0].guid, 16_655_346_559_538_300_140);
        assert_eq!(snaps[1].createtxg, 16);
        assert_eq!(
            (snaps[0].creation, snaps[1].creation),
            (Some(1_796_425_940), Some(1_796_425_946))
        );
    }
    let get = "get -H -p -d 1 -o name,property,value guid,createtxg,creation pool/fs";
    assert_eq!(
        script.calls(),
        [
            "list -H -p -t snapshot -o name,guid,createtxg,creation -s createtxg -d 1 pool/fs",
            get,
            get
        ]
    );
    let e = zfs.list_snapshots(&ds("pool/missing")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DatasetNotFound);
}

#[tokio::test]
async fn legacy_estimate_uses_referenced_and_remembers() {
    let script = Script::new("zfs-legacy-estimate", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    for _ in 0..2 {
        let est = zfs
            .estimate_send_size(Some(&snap("pool/fs@a")), &snap("pool/fs@b"))
            .await
            .unwrap();
        // referenced × compressratio: the stream is uncompressed.
        assert_eq!(est.bytes, 970_752);
        assert_eq!(est.method, EstimateMethod::Referenced);
    }
    let get = "get -H -p -o value referenced,compressratio pool/fs@b";
    assert_eq!(
        script.calls(),
        ["send -nvP -i pool/fs@a pool/fs@b", get, get]
    );
}

#[tokio::test]
async fn legacy_exists_and_stream_failures() {
    let script = Script::new("zfs-legacy-misc", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    assert!(zfs.dataset_exists(&ds("pool/fs")).await.unwrap());
    assert!(!zfs.dataset_exists(&ds("pool/missing")).await.unwrap());

    // The send writes its bytes, then exits 1: the bytes arrive, then the error.
    let stream = zfs.send(None, &snap("pool/fs@sp ace")).await.unwrap();
    assert_eq!(
        stream.description(),
        format!("{} send 'pool/fs@sp ace'", script.path.display())
    );
    let e = z3_zfs::conformance::read_stream(stream).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandFailed);
    assert_eq!(
        e.stderr(),
        Some("warning: cannot send pool/fs@sp ace: Broken pipe")
    );

    let e = z3_zfs::conformance::receive_from_slice(&zfs, &snap("pool/dst@a"), true, b"junk")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidStream);
    assert!(script.calls().contains(&"receive -F pool/dst@a".to_owned()));
}

#[tokio::test]
async fn modern_dialect_uses_list_p_and_dry_run() {
    let script = Script::new("zfs-modern", MODERN);
    let zfs = ZfsCli::with_program(&script.path);
    let snaps = zfs.list_snapshots(&ds("pool/fs")).await.unwrap();
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[1].creation, Some(1_795_735_041));
    let est = zfs
        .estimate_send_size(Some(&snap("pool/fs@a")), &snap("pool/fs@b"))
        .await
        .unwrap();
    assert_eq!(est.bytes, 4096);
    assert_eq!(est.method, EstimateMethod::DryRun);
    let mut sink = zfs
        .receive(&snap("pool/dst@b"), &ReceiveOptions::default())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut sink, b"stream")
        .await
        .unwrap();
    sink.finish().await.unwrap();
    assert_eq!(
        script.calls(),
        [
            "list -H -p -t snapshot -o name,guid,createtxg,creation -s createtxg -d 1 pool/fs",
            "send -nvP -i pool/fs@a pool/fs@b",
            "receive pool/dst@b",
        ]
    );
}

#[tokio::test]
async fn holds_mark_first_and_release_is_idempotent_on_zfs_fuse() {
    let script = Script::new("zfs-legacy-holds", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    zfs.hold(&snap("pool/fs@b"), "z3").await.unwrap();
    // `tag already exists on this dataset`: success.
    zfs.hold(&snap("pool/fs@held"), "z3").await.unwrap();
    let e = zfs.hold(&snap("pool/fs@missing"), "z3").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SnapshotNotFound, "{e}");
    assert_eq!(
        script.calls(),
        [
            "set z3:hold:z3=on pool/fs@b",
            "hold z3 pool/fs@b",
            "set z3:hold:z3=on pool/fs@held",
            "hold z3 pool/fs@held",
            "set z3:hold:z3=on pool/fs@missing",
        ]
    );

    let script = Script::new("zfs-legacy-release", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    zfs.release(&snap("pool/fs@b"), "z3").await.unwrap();
    // `no such tag on this dataset`: success.
    zfs.release(&snap("pool/fs@other"), "z3").await.unwrap();
    // zfs-fuse says "dataset does not exist" for an existing snapshot without holds: the
    // snapshot is looked up, found, and the release counts as done.
    zfs.release(&snap("pool/fs@unheld"), "z3").await.unwrap();
    let e = zfs
        .release(&snap("pool/fs@missing"), "z3")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SnapshotNotFound, "{e}");
    assert_eq!(
        e.stderr(),
        Some("cannot release 'z3' from 'pool/fs@missing': dataset does not exist")
    );
    // Any other failure is an error (this one says "permission denied": not root).
    let e = zfs.release(&snap("pool/fs@weird"), "z3").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert_eq!(
        script.calls(),
        [
            "release z3 pool/fs@b",
            "inherit z3:hold:z3 pool/fs@b",
            "release z3 pool/fs@other",
            "inherit z3:hold:z3 pool/fs@other",
            "release z3 pool/fs@unheld",
            "list -H -o name pool/fs@unheld",
            "inherit z3:hold:z3 pool/fs@unheld",
            "release z3 pool/fs@missing",
            "list -H -o name pool/fs@missing",
            "release z3 pool/fs@weird",
        ]
    );

    // A refused tag runs nothing.
    let script = Script::new("zfs-legacy-tags", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    for tag in ["", "bad tag!", "-x", ".send-1"] {
        let e = zfs.hold(&snap("pool/fs@b"), tag).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName);
        let e = zfs.release(&snap("pool/fs@b"), tag).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidName);
    }
    assert_eq!(script.calls(), Vec::<String>::new());
}

#[tokio::test]
async fn held_snapshots_is_one_get_of_local_marks() {
    let script = Script::new("zfs-legacy-held", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    let held = zfs.held_snapshots(&ds("pool/fs"), "z3").await.unwrap();
    // Another dataset's row and a name z3 cannot represent are dropped.
    assert_eq!(held, [snap("pool/fs@b"), snap("pool/fs@sp ace")]);
    assert_eq!(
        script.calls(),
        ["get -H -p -d 1 -s local -o name,property,value z3:hold:z3 pool/fs"]
    );
    let e = zfs
        .held_snapshots(&ds("pool/missing"), "z3")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DatasetNotFound);
}

#[tokio::test]
async fn bookmarks_are_unsupported_on_zfs_fuse_and_remembered() {
    let script = Script::new("zfs-legacy-bookmarks", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    let mark = z3_zfs::FullBookmarkName::parse("pool/fs#a").unwrap();
    let e = zfs.bookmark(&snap("pool/fs@a"), &mark).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // Known now: nothing runs any more.
    let e = zfs.list_bookmarks(&ds("pool/fs")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    let e = zfs
        .send_from_bookmark(&mark, &snap("pool/fs@b"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(script.calls(), ["bookmark pool/fs@a pool/fs#a"]);

    // Listing first finds out too (`invalid type 'bookmark'`).
    let script = Script::new("zfs-legacy-bookmarks-list", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    let e = zfs.list_bookmarks(&ds("pool/fs")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    let e = zfs.bookmark(&snap("pool/fs@a"), &mark).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(script.calls().len(), 1);
}

#[tokio::test]
async fn bookmarks_on_openzfs() {
    let script = Script::new("zfs-modern-bookmarks", MODERN);
    let zfs = ZfsCli::with_program(&script.path);
    let b = z3_zfs::FullBookmarkName::parse("pool/fs#b").unwrap();
    zfs.bookmark(&snap("pool/fs@b"), &b).await.unwrap();
    let a = z3_zfs::FullBookmarkName::parse("pool/fs#a").unwrap();
    let e = zfs.bookmark(&snap("pool/fs@a"), &a).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CommandFailed);
    assert_eq!(
        e.stderr(),
        Some("cannot create bookmark 'pool/fs#a': bookmark exists")
    );
    let elsewhere = z3_zfs::FullBookmarkName::parse("pool/other#a").unwrap();
    let e = zfs
        .bookmark(&snap("pool/fs@a"), &elsewhere)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName);

    let listed = zfs.list_bookmarks(&ds("pool/fs")).await.unwrap();
    assert_eq!(listed.len(), 1, "the child's row is dropped: {listed:?}");
    assert_eq!(listed[0].name, a);
    assert_eq!(
        (listed[0].guid, listed[0].createtxg, listed[0].creation),
        (16_655_346_559_538_300_140, 11, Some(1_795_735_040))
    );
    let stream = zfs
        .send_from_bookmark(&a, &snap("pool/fs@b"))
        .await
        .unwrap();
    let bytes = z3_zfs::conformance::read_stream(stream).await.unwrap();
    assert_eq!(bytes, b"STREAM");
    assert_eq!(
        script.calls(),
        [
            "bookmark pool/fs@b pool/fs#b",
            "bookmark pool/fs@a pool/fs#a",
            "list -H -p -t bookmark -o name,guid,createtxg,creation -s createtxg -d 1 pool/fs",
            "send -i pool/fs#a pool/fs@b",
        ]
    );
}

/// A stand-in `ssh`: logs its own arguments, then runs the remote command string with `sh -c`,
/// as the remote user's shell would, with the stand-in `zfs` first on `PATH`.
const FAKE_SSH: &str = r#"#!/bin/sh
printf '%s\n' "$*" >> "$0.log"
while [ "$1" != "--" ]; do shift; done
shift
shift
PATH="$(dirname "$0"):$PATH" exec sh -c "$1"
"#;

/// A stand-in remote `zfs` that logs every argument in brackets and lists one snapshot.
const ARGV_ZFS: &str = r#"#!/bin/sh
for a in "$@"; do printf '[%s]' "$a"; done >> "$0.log"
printf '\n' >> "$0.log"
case "$1" in
list)
  case "$*" in
  *snapshot*) printf 'pool/my fs@a b\t7\t3\n' ;;
  *) printf '%s\n' "pool/my fs" ;;
  esac
  ;;
esac
"#;

#[tokio::test]
async fn zfs_over_ssh_keeps_every_argument_whole_through_the_remote_shell() {
    let zfs_script = Script::new("zfs", ARGV_ZFS);
    let ssh_script = Script::new("ssh", FAKE_SSH);
    let mut target = z3_zfs::SshTarget::new("backup@example.com").unwrap();
    target.program.clone_from(&ssh_script.path);
    target.port = Some(2222);
    let zfs = ZfsCli::over_ssh(target);
    assert!(zfs.dataset_exists(&ds("pool/my fs")).await.unwrap());
    let snaps = zfs.list_snapshots(&ds("pool/my fs")).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].name.to_string(), "pool/my fs@a b");
    assert_eq!(snaps[0].guid, 7);
    // ssh got its options, `--`, the destination and one quoted command string.
    let ssh_calls = ssh_script.calls();
    assert!(
        ssh_calls[0].starts_with("-p 2222 -- backup@example.com LC_ALL=C zfs list "),
        "{ssh_calls:?}"
    );
    assert!(ssh_calls[0].ends_with(" 'pool/my fs'"), "{ssh_calls:?}");
    // The remote zfs received the name as one argument.
    let zfs_calls = zfs_script.calls();
    assert!(
        zfs_calls.iter().all(|c| c.ends_with("[pool/my fs]")),
        "{zfs_calls:?}"
    );
}

#[tokio::test]
async fn send_flags_are_probed_one_by_one_and_passed_as_arguments() {
    use z3_zfs::SendFlags;
    let script = Script::new("zfs-openzfs-07", OPENZFS_07);
    let zfs = ZfsCli::with_program(&script.path);
    let supported = zfs
        .supported_send_flags(&snap("pool/fs@b"), SendFlags::ALL)
        .await
        .unwrap();
    assert_eq!(supported.to_metadata(), "cLe", "0.7 has no -w");
    assert_eq!(
        script.calls(),
        [
            "send -n -P -w pool/fs@b",
            "send -n -P -c pool/fs@b",
            "send -n -P -L pool/fs@b",
            "send -n -P -e pool/fs@b"
        ]
    );
    // Only what was asked is probed.
    let large = SendFlags {
        large_blocks: true,
        ..SendFlags::NONE
    };
    assert_eq!(
        zfs.supported_send_flags(&snap("pool/fs@b"), large)
            .await
            .unwrap(),
        large
    );
    // A dry run that fails for another reason is that error, not "unsupported".
    let err = zfs
        .supported_send_flags(
            &snap("pool/fs@missing"),
            SendFlags::ALL.without(SendFlags {
                raw: true,
                ..SendFlags::NONE
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SnapshotNotFound, "{err}");

    let flags = SendFlags::from_metadata("cL").unwrap();
    let mut stream = zfs
        .send_with_flags(Some(&snap("pool/fs@a")), &snap("pool/fs@b"), flags)
        .await
        .unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut bytes)
        .await
        .unwrap();
    assert_eq!(bytes, b"STREAM");
    assert_eq!(
        script.calls().last().map(String::as_str),
        Some("send -c -L -i pool/fs@a pool/fs@b")
    );
}

#[tokio::test]
async fn receivable_flags_are_probed_on_a_snapshot_that_need_not_exist() {
    use z3_zfs::SendFlags;
    // OpenZFS 0.7 parses its options before it opens the snapshot: a missing one means the
    // option was understood (it can receive -c, -L and -e streams), not an error.
    let script = Script::new("zfs-openzfs-07-recv", OPENZFS_07);
    let zfs = ZfsCli::with_program(&script.path);
    let receivable = zfs
        .receivable_send_flags(&snap("pool/fs@missing"), SendFlags::ALL)
        .await
        .unwrap();
    assert_eq!(
        receivable.to_metadata(),
        "cLe",
        "0.7 cannot receive raw streams"
    );
    assert_eq!(script.calls().len(), 4, "{:?}", script.calls());
    // zfs-fuse rejects the dry run itself: nothing is receivable.
    let script = Script::new("zfs-legacy-recv", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    let receivable = zfs
        .receivable_send_flags(&snap("pool/fs@missing"), SendFlags::ALL)
        .await
        .unwrap();
    assert!(receivable.is_empty(), "{receivable}");
}

#[tokio::test]
async fn zfs_fuse_supports_no_send_flag() {
    let script = Script::new("zfs-legacy-flags", LEGACY);
    let zfs = ZfsCli::with_program(&script.path);
    let supported = zfs
        .supported_send_flags(&snap("pool/fs@b"), z3_zfs::SendFlags::ALL)
        .await
        .unwrap();
    assert!(supported.is_empty(), "{supported}");
}
