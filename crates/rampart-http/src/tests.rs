//! Tests of the upload service through the axum app (`tower::ServiceExt::oneshot`): slot
//! policy, PUT scanning and refusals, GET of accepted files only, signatures, expiry, the
//! guard resolver and retention.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use rampart_archive::{Archive, ArchiveOptions, RecordKind, SearchQuery, VerdictKind};
use rampart_guard::{BlocklistSet, Guard, GuardConfig, Scanner, UploadResolver, UploadedFile, YaraScanner};
use rampart_store::sqlite::SqliteStore;
use rampart_store::{SecurityStore, UploadStore};
use tower::ServiceExt;

use crate::service::{SlotError, SlotRequest, UploadSettings, Uploads};

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const BASE: &str = "https://upload.example:5443";

struct Fixture {
    up: Arc<Uploads>,
    db: Arc<SqliteStore>,
    archive: Arc<Archive>,
    _dir: tempfile::TempDir,
}

async fn fixture(settings: UploadSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let rules = vec![("eicar.yar".to_owned(), include_str!("../../../rules/eicar.yar").to_owned())];
    let yara: Arc<dyn Scanner> = Arc::new(YaraScanner::new(rules).unwrap());
    let guard = Arc::new(Guard::new(GuardConfig::default(), vec![yara], BlocklistSet::new()));
    let archive = Arc::new(Archive::open_in_memory_for_tests(ArchiveOptions::default()).await.unwrap());
    let settings = UploadSettings { public_url: BASE.into(), ..settings };
    let up = Uploads::new(
        settings,
        db.clone(),
        Some(guard),
        Some(archive.clone()),
        db.clone(),
        dir.path().join("uploads"),
        b"secret",
    )
    .unwrap();
    Fixture { up: Arc::new(up), db, archive, _dir: dir }
}

fn req(name: &str, size: usize, ct: &str) -> SlotRequest {
    SlotRequest { filename: name.into(), size: size as u64, content_type: Some(ct.into()) }
}

async fn call(f: &Fixture, method: &str, url: &str, ct: Option<&str>, body: Vec<u8>) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
    let path = url.strip_prefix(BASE).unwrap_or(url);
    let mut b = Request::builder().method(method).uri(path);
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    b = b.header("content-length", body.len().to_string());
    let resp = crate::app(f.up.clone(), Duration::from_secs(30)).oneshot(b.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec();
    (status, bytes, headers)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn clean_file_round_trip_keeps_type_and_name() {
    let f = fixture(UploadSettings::default()).await;
    let data = b"quarterly report\n".repeat(10);
    let slot = f.up.request_slot("alice@example", req("Report Q3 (final).txt", data.len(), "text/plain")).await.unwrap();
    assert!(slot.put_url.starts_with(BASE) && slot.get_url.starts_with(BASE));
    // Not served before it is uploaded.
    let (st, _, _) = call(&f, "GET", &slot.get_url, None, vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, body, _) = call(&f, "PUT", &slot.put_url, Some("text/plain"), data.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{}", text(&body));
    let (st, body, h) = call(&f, "GET", &slot.get_url, None, vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, data);
    assert_eq!(h["content-type"], "text/plain");
    let disp = h["content-disposition"].to_str().unwrap();
    assert!(disp.contains("Report%20Q3%20%28final%29%2Etxt"), "{disp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    // A slot is used once.
    let (st, _, _) = call(&f, "PUT", &slot.put_url, Some("text/plain"), data.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // On the record, by hash.
    let recs = f.archive.search(&SearchQuery { kind: Some(RecordKind::File), ..Default::default() }).await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].record.verdict.kind(), VerdictKind::Delivered);
    assert!(recs[0].record.meta_json.as_deref().unwrap().contains(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data))));
    // The guard learns the hash behind the URL.
    assert!(f.up.is_upload_url(&slot.get_url));
    assert!(matches!(f.up.resolve(&slot.get_url).await.unwrap(), Some(UploadedFile::Available { .. })));
    assert!(!f.up.is_upload_url("https://elsewhere.example/file/x"));
}

#[tokio::test]
async fn eicar_is_refused_recorded_and_never_served() {
    let f = fixture(UploadSettings::default()).await;
    let slot = f.up.request_slot("mallory@example", req("notes.txt", EICAR.len(), "text/plain")).await.unwrap();
    let (st, body, _) = call(&f, "PUT", &slot.put_url, Some("text/plain"), EICAR.to_vec()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(text(&body).contains("malware signature"), "{}", text(&body));
    let (st, _, _) = call(&f, "GET", &slot.get_url, None, vec![]).await;
    assert_eq!(st, StatusCode::GONE);
    let events = f.db.events(None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].account.as_str(), events[0].rule.as_str()), ("mallory@example", "signature"));
    let recs = f.archive.search(&SearchQuery { kind: Some(RecordKind::File), ..Default::default() }).await.unwrap();
    assert_eq!(recs[0].record.verdict.kind(), VerdictKind::Blocked);
    assert!(matches!(f.up.resolve(&slot.get_url).await.unwrap(), Some(UploadedFile::Refused { .. })));
    assert_eq!(std::fs::read_dir(f._dir.path().join("uploads")).unwrap().count(), 0, "nothing kept on disk");
}

#[tokio::test]
async fn executable_disguised_as_image_is_refused() {
    let f = fixture(UploadSettings::default()).await;
    let mut pe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    pe.resize(512, 0);
    let slot = f.up.request_slot("bob@example", req("cat.jpg", pe.len(), "image/jpeg")).await.unwrap();
    let (st, body, _) = call(&f, "PUT", &slot.put_url, Some("image/jpeg"), pe).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(text(&body).trim(), "blocked: executable disguised as image (PE)");
    let ev = f.db.events(None, 10).await.unwrap();
    assert_eq!(ev[0].rule, "upload.forbidden_type");
}

#[tokio::test]
async fn forged_altered_and_expired_urls_are_refused() {
    let f = fixture(UploadSettings::default()).await;
    let slot = f.up.request_slot("a@example", req("a.txt", 3, "text/plain")).await.unwrap();
    let forged = slot.put_url.replace("/a.txt", "/b.txt");
    let (st, _, _) = call(&f, "PUT", &forged, Some("text/plain"), b"abc".to_vec()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Tamper with the tag.
    let mut parts: Vec<&str> = slot.put_url.rsplitn(3, '/').collect();
    let bad_tag = "0".repeat(32);
    parts[1] = &bad_tag;
    parts.reverse();
    let (st, _, _) = call(&f, "PUT", &parts.join("/"), Some("text/plain"), b"abc".to_vec()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Wrong size and wrong type.
    let (st, _, _) = call(&f, "PUT", &slot.put_url, Some("text/plain"), b"abcd".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _, _) = call(&f, "PUT", &slot.put_url, Some("image/png"), b"abc".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // A forged GET.
    let (st, _, _) = call(&f, "PUT", &slot.put_url, Some("text/plain"), b"abc".to_vec()).await;
    assert_eq!(st, StatusCode::CREATED);
    let forged_get = slot.get_url.replace(&slot.get_url[slot.get_url.len() - 38..slot.get_url.len() - 6], &"f".repeat(32));
    let (st, _, _) = call(&f, "GET", &forged_get, None, vec![]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // An expired slot (zero lifetime).
    let f = fixture(UploadSettings { slot_ttl: Duration::ZERO, ..UploadSettings::default() }).await;
    let slot = f.up.request_slot("a@example", req("a.txt", 3, "text/plain")).await.unwrap();
    let (st, body, _) = call(&f, "PUT", &slot.put_url, Some("text/plain"), b"abc".to_vec()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(text(&body).contains("expired"));
    // Unknown routes.
    let (st, _, _) = call(&f, "GET", "/", None, vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn quarantined_uploader_cannot_use_an_earlier_slot() {
    let f = fixture(UploadSettings::default()).await;
    let slot = f.up.request_slot("w@example", req("a.txt", 3, "text/plain")).await.unwrap();
    f.db.quarantine("w@example", "outbreak.blast", "blast", 1).await.unwrap();
    let (st, body, _) = call(&f, "PUT", &slot.put_url, Some("text/plain"), b"abc".to_vec()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(text(&body).contains("quarantined"));
}

#[tokio::test]
async fn slot_policy_size_quota_and_types() {
    let f = fixture(UploadSettings { max_file_size: 1000, quota_per_user: 1500, ..UploadSettings::default() }).await;
    let e = f.up.request_slot("a@example", req("big.bin", 1001, "application/octet-stream")).await.unwrap_err();
    assert_eq!(e, SlotError::TooLarge { max: 1000 });
    f.up.request_slot("a@example", req("one.bin", 1000, "application/octet-stream")).await.unwrap();
    let e = f.up.request_slot("a@example", req("two.bin", 600, "application/octet-stream")).await.unwrap_err();
    assert_eq!(e, SlotError::Quota { used: 1000, quota: 1500 });
    let e = f.up.request_slot("a@example", req("setup.exe", 10, "application/octet-stream")).await.unwrap_err();
    assert!(matches!(&e, SlotError::Forbidden(t) if t.contains("executable")), "{e:?}");
    let e = f.up.request_slot("a@example", req("run.txt", 10, "application/x-sh")).await.unwrap_err();
    assert!(matches!(&e, SlotError::Forbidden(t) if t.contains("script")), "{e:?}");
    for bad in ["../etc/passwd", "", "a\nb"] {
        assert!(matches!(f.up.request_slot("a@example", req(bad, 10, "text/plain")).await, Err(SlotError::BadRequest(_))));
    }
    assert!(matches!(f.up.request_slot("a@example", req("a.txt", 10, "bad type\r\n")).await, Err(SlotError::BadRequest(_))));
    // A body larger than the limit is cut off by the body limit.
    let slot = f.up.request_slot("b@example", req("x.bin", 10, "application/octet-stream")).await.unwrap();
    let (st, _, _) = call(&f, "PUT", &slot.put_url, None, vec![b'x'; 2000]).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn retention_deletes_old_files_and_stale_slots() {
    let f = fixture(UploadSettings { retention: Some(Duration::from_secs(3600)), ..UploadSettings::default() }).await;
    let slot = f.up.request_slot("a@example", req("a.txt", 3, "text/plain")).await.unwrap();
    let (st, _, _) = call(&f, "PUT", &slot.put_url, Some("text/plain"), b"abc".to_vec()).await;
    assert_eq!(st, StatusCode::CREATED);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert_eq!(f.up.apply_retention(now).await.unwrap(), 0);
    // A legal hold on the uploader keeps the file past retention.
    let hold = rampart_archive::LegalHold { reason: "case 1".into(), account: Some("a@example".into()), with: None, text: None, since_ms: None, until_ms: None };
    let id = f.archive.add_hold(hold).await.unwrap();
    assert_eq!(f.up.apply_retention(now + 7_200_000).await.unwrap(), 0);
    f.archive.release_hold(id).await.unwrap();
    assert_eq!(f.up.apply_retention(now + 7_200_000).await.unwrap(), 1);
    let (st, _, _) = call(&f, "GET", &slot.get_url, None, vec![]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(f.db.upload_usage("a@example", now).await.unwrap() == 0);
}
