//! ClamdScanner against a real clamd (Debian's `clamav-daemon`), started here on the test
//! signatures in `tests/data/guard/clamav/`. Skipped, with a printed reason, if `clamd` is not
//! installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_guard::{BlocklistSet, ClamdScanner, Guard, GuardConfig, GuardError, Scanner, Verdict};

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const MARKER: &str = "ENTERPRISE-IM-MALWARE-TEST-MARKER-7f3a9c";

fn find_clamd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("clamd"))
        .find(|p| p.is_file())
}

struct Clamd {
    child: Child,
    _dir: tempfile::TempDir,
    tcp: String,
    unix: String,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(clamd: &Path) -> Clamd {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    std::fs::create_dir(&db).unwrap();
    let sigs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/guard/clamav");
    for f in ["custom.ndb", "custom.hdb"] {
        std::fs::copy(sigs.join(f), db.join(f)).unwrap();
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sock = dir.path().join("clamd.sock");
    let conf = dir.path().join("clamd.conf");
    std::fs::write(
        &conf,
        format!(
            "Foreground yes\nDatabaseDirectory {}\nLocalSocket {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nStreamMaxLength 1M\nLogFile {}\nLogVerbose no\n",
            db.display(),
            sock.display(),
            dir.path().join("clamd.log").display()
        ),
    )
    .unwrap();
    let child = Command::new(clamd)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Clamd {
        child,
        tcp: format!("tcp:127.0.0.1:{port}"),
        unix: format!("unix:{}", sock.display()),
        _dir: dir,
    }
}

async fn wait_ready(s: &ClamdScanner, c: &mut Clamd) {
    let start = Instant::now();
    loop {
        if let Ok(true) = s.ping().await {
            return;
        }
        if let Ok(Some(status)) = c.child.try_wait() {
            let log = std::fs::read_to_string(c._dir.path().join("clamd.log")).unwrap_or_default();
            panic!("clamd exited ({status}): {log}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "clamd did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn clamd_instream() {
    let Some(bin) = find_clamd() else {
        println!(
            "SKIPPED clamd_instream: clamd is not installed (apt-get install clamav-daemon clamav)"
        );
        return;
    };
    let mut c = start(&bin);
    let tcp = ClamdScanner::new(&c.tcp)
        .unwrap()
        .with_io_timeout(Duration::from_secs(5));
    wait_ready(&tcp, &mut c).await;
    let unix = ClamdScanner::new(&c.unix).unwrap();

    for s in [&tcp, &unix] {
        assert_eq!(
            s.scan(b"hello, just a normal chat message").await.unwrap(),
            None
        );
        let sig = s
            .scan(EICAR.as_bytes())
            .await
            .unwrap()
            .expect("EICAR detected");
        assert!(sig.contains("EICAR"), "{sig}");
        let sig = s
            .scan(format!("chat text around {MARKER} and more").as_bytes())
            .await
            .unwrap()
            .expect("marker detected");
        assert!(sig.contains("MarkerString"), "{sig}");
        assert_eq!(s.scan(b"").await.unwrap(), None);
    }

    // Several chunks, under the limit.
    let mut data = vec![b'a'; 300 * 1024];
    data[200_000..200_000 + MARKER.len()].copy_from_slice(MARKER.as_bytes());
    assert!(tcp.scan(&data).await.unwrap().is_some());

    // Over StreamMaxLength: clamd answers with an error and closes; never "clean".
    let big = vec![b'b'; 3 << 20];
    match tcp.scan(&big).await {
        Err(GuardError::Engine(e)) => {
            assert!(e.contains("size limit") || e.contains("clamd"), "{e}")
        }
        other => panic!("expected an engine error, got {other:?}"),
    }

    // Through the guard: files and message text.
    let g = Guard::new(
        GuardConfig::default(),
        vec![Arc::new(tcp)],
        BlocklistSet::new(),
    );
    let v = g
        .scan_file("eicar.com.txt", EICAR.as_bytes())
        .await
        .unwrap();
    let Verdict::Block(f) = v else {
        panic!("{v:?}")
    };
    assert!(f.evidence.signature.unwrap().starts_with("clamd:"));
    assert_eq!(
        g.scan_file("report.txt", b"quarterly numbers")
            .await
            .unwrap(),
        Verdict::Allow
    );

    // A dead daemon is an error (fail closed), not "clean".
    drop(c);
    let dead = ClamdScanner::new(&format!(
        "tcp:127.0.0.1:{}",
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    ))
    .unwrap();
    assert!(dead.scan(b"x").await.is_err());
}
