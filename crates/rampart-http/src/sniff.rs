//! File-type sniffing by content: what an upload really is, whatever its name and declared
//! content type say. An `.exe` renamed `.jpg` is still a PE executable.
//!
//! [`sniff`] looks at magic bytes (the `infer` crate plus our own checks for what it does not
//! classify as dangerous: Java classes, MSI installers, shebang scripts, HTML/HTA and SVG
//! with script, ZIP archives — JARs, APKs, or archives holding an executable). [`category_of_name`]
//! and [`category_of_mime`] classify what the uploader *claims*, so a slot for `setup.exe`
//! can be refused before any byte is sent, and a refusal can say "disguised as image".

/// What kind of file, as far as policy is concerned. `forbidden_types` names these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// Native or byte-code programs and installers: PE, ELF, Mach-O, Java, DEX, MSI, JAR, APK.
    Executable,
    /// Text programs: shebang scripts, HTML applications, pages and SVGs with script.
    Script,
    /// Archives (ZIP, 7z, RAR, gzip, ...) without an executable inside.
    Archive,
    Image,
    Audio,
    Video,
    /// Office documents, PDF, plain text and anything else.
    Document,
}

impl Category {
    /// The name used in `forbidden_types` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Executable => "executable",
            Category::Script => "script",
            Category::Archive => "archive",
            Category::Image => "image",
            Category::Audio => "audio",
            Category::Video => "video",
            Category::Document => "document",
        }
    }

    /// Parse a `forbidden_types` entry.
    pub fn parse(s: &str) -> Option<Category> {
        Some(match s {
            "executable" => Category::Executable,
            "script" => Category::Script,
            "archive" => Category::Archive,
            "image" => Category::Image,
            "audio" => Category::Audio,
            "video" => Category::Video,
            "document" => Category::Document,
            _ => return None,
        })
    }
}

/// The result of sniffing some bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sniffed {
    pub category: Category,
    /// Short name of what was found: `PE`, `ELF`, `Mach-O`, `JAR`, `shell script (#!)`, ...
    pub label: String,
    /// MIME type by content, when known.
    pub mime: Option<&'static str>,
}

impl Sniffed {
    fn new(category: Category, label: impl Into<String>, mime: Option<&'static str>) -> Self {
        Sniffed { category, label: label.into(), mime }
    }
}

/// File name extensions that are programs or scripts on some platform.
const EXECUTABLE_EXT: &[&str] = &[
    "exe", "dll", "scr", "pif", "com", "cpl", "msi", "msp", "jar", "class", "apk", "dex", "elf", "so", "dylib",
    "app", "deb", "rpm", "lnk", "sys", "drv", "ocx", "appx", "msix",
];
const SCRIPT_EXT: &[&str] = &[
    "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "ps1", "psm1", "hta", "sh", "bash", "zsh", "py", "pl",
    "rb", "php", "reg", "scf", "inf",
];
const ARCHIVE_EXT: &[&str] = &["zip", "7z", "rar", "gz", "tgz", "bz2", "xz", "tar", "cab", "iso", "img", "zst"];

/// The extension of a file name, lowercased (`None` without one).
fn extension(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = base.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

/// What a file name claims to be, by its extension.
pub fn category_of_name(name: &str) -> Option<Category> {
    let ext = extension(name)?;
    let e = ext.as_str();
    Some(if EXECUTABLE_EXT.contains(&e) {
        Category::Executable
    } else if SCRIPT_EXT.contains(&e) {
        Category::Script
    } else if ARCHIVE_EXT.contains(&e) {
        Category::Archive
    } else if matches!(e, "jpg" | "jpeg" | "png" | "gif" | "webp" | "bmp" | "tif" | "tiff" | "heic" | "avif" | "ico" | "svg") {
        Category::Image
    } else if matches!(e, "mp3" | "ogg" | "oga" | "opus" | "m4a" | "wav" | "flac" | "aac") {
        Category::Audio
    } else if matches!(e, "mp4" | "webm" | "mkv" | "mov" | "avi" | "m4v" | "3gp") {
        Category::Video
    } else {
        Category::Document
    })
}

/// What a declared content type claims to be.
pub fn category_of_mime(mime: &str) -> Option<Category> {
    let m = mime.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if m.is_empty() || m == "application/octet-stream" {
        return None;
    }
    let dangerous_exec = [
        "application/x-msdownload", "application/x-msdos-program", "application/x-executable",
        "application/x-elf", "application/x-mach-binary", "application/java-archive",
        "application/x-java-archive", "application/java-vm", "application/x-msi", "application/x-ms-installer",
        "application/vnd.microsoft.portable-executable", "application/vnd.android.package-archive",
        "application/x-sharedlib", "application/x-dosexec",
    ];
    let dangerous_script = [
        "application/x-sh", "application/x-shellscript", "text/x-shellscript", "application/javascript",
        "text/javascript", "application/x-javascript", "application/hta", "application/x-bat", "application/x-msdos-batch", "text/vbscript", "application/x-powershell",
        "text/x-python", "application/x-python-code", "application/x-perl", "application/x-php",
    ];
    Some(if dangerous_exec.contains(&m.as_str()) {
        Category::Executable
    } else if dangerous_script.contains(&m.as_str()) {
        Category::Script
    } else if m.starts_with("image/") {
        Category::Image
    } else if m.starts_with("audio/") {
        Category::Audio
    } else if m.starts_with("video/") {
        Category::Video
    } else if matches!(
        m.as_str(),
        "application/zip" | "application/x-7z-compressed" | "application/x-rar-compressed" | "application/vnd.rar"
            | "application/gzip" | "application/x-tar" | "application/x-bzip2" | "application/x-xz"
    ) {
        Category::Archive
    } else {
        Category::Document
    })
}

/// The most ZIP entries looked at (a hostile archive may claim millions).
const MAX_ZIP_ENTRIES: usize = 10_000;

/// Names of the entries of a ZIP archive, from its central directory; `None` if `data` is
/// not a well-formed ZIP. Bounded: reads at most [`MAX_ZIP_ENTRIES`] entries, never past
/// the end of `data`.
pub fn zip_entry_names(data: &[u8]) -> Option<Vec<String>> {
    const EOCD: &[u8] = b"PK\x05\x06";
    const CDH: &[u8] = b"PK\x01\x02";
    if data.len() < 22 {
        return None;
    }
    // The end-of-central-directory record is in the last 22 + 65535 bytes.
    let from = data.len().saturating_sub(22 + 65_535);
    let tail = &data[from..];
    let pos = from + tail.windows(4).rposition(|w| w == EOCD)?;
    let eocd = data.get(pos..pos + 22)?;
    let u16le = |b: &[u8], i: usize| -> Option<usize> { Some(usize::from(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]))) };
    let u32le = |b: &[u8], i: usize| -> Option<usize> {
        let v = u32::from_le_bytes([*b.get(i)?, *b.get(i + 1)?, *b.get(i + 2)?, *b.get(i + 3)?]);
        usize::try_from(v).ok()
    };
    let count = u16le(eocd, 10)?;
    let mut off = u32le(eocd, 16)?;
    let mut names = Vec::new();
    for _ in 0..count.min(MAX_ZIP_ENTRIES) {
        let h = data.get(off..off.checked_add(46)?)?;
        if &h[..4] != CDH {
            break;
        }
        let (n, x, c) = (u16le(h, 28)?, u16le(h, 30)?, u16le(h, 32)?);
        let name = data.get(off + 46..off + 46 + n)?;
        names.push(String::from_utf8_lossy(name).into_owned());
        off = off.checked_add(46 + n + x + c)?;
    }
    Some(names)
}

/// Is this CFB (OLE2) file an MSI installer? The root storage's CLSID says so.
fn is_msi(data: &[u8]) -> bool {
    // Root directory entry: at sector (first dir sector + 1) * sector size; its CLSID at +80.
    const MSI_CLSID: [u8; 16] = [0x84, 0x10, 0x0c, 0x00, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46];
    let Some(shift) = data.get(30..32).map(|b| u16::from_le_bytes([b[0], b[1]])) else { return false };
    let Some(first) = data.get(48..52).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) else { return false };
    if !(7..=16).contains(&shift) {
        return false;
    }
    let size = 1usize << shift;
    let Some(at) = usize::try_from(first).ok().and_then(|f| f.checked_add(1)).and_then(|s| s.checked_mul(size)) else {
        return false;
    };
    data.get(at + 80..at + 96).is_some_and(|c| c == MSI_CLSID)
}

/// Lowercased ASCII view of the start of a text file (for script markers).
fn head_lower(data: &[u8], n: usize) -> String {
    data[..data.len().min(n)].iter().map(|b| b.to_ascii_lowercase() as char).collect()
}

/// What `data` is, by content.
pub fn sniff(data: &[u8]) -> Sniffed {
    use Category::*;
    let b = data;
    // Programs infer does not call executables (or at all).
    if b.starts_with(b"MZ") {
        return Sniffed::new(Executable, "PE", Some("application/vnd.microsoft.portable-executable"));
    }
    if b.starts_with(b"\x7fELF") {
        return Sniffed::new(Executable, "ELF", Some("application/x-executable"));
    }
    if b.len() >= 8 && b.starts_with(&[0xca, 0xfe, 0xba, 0xbe]) {
        // Fat Mach-O has a small architecture count here; a Java class has its version (≥ 45).
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        return if n < 45 {
            Sniffed::new(Executable, "Mach-O", Some("application/x-mach-binary"))
        } else {
            Sniffed::new(Executable, "Java class", Some("application/java-vm"))
        };
    }
    for magic in [[0xfe, 0xed, 0xfa, 0xce], [0xfe, 0xed, 0xfa, 0xcf], [0xce, 0xfa, 0xed, 0xfe], [0xcf, 0xfa, 0xed, 0xfe]] {
        if b.starts_with(&magic) {
            return Sniffed::new(Executable, "Mach-O", Some("application/x-mach-binary"));
        }
    }
    if b.starts_with(b"dex\n") {
        return Sniffed::new(Executable, "Android DEX", None);
    }
    if b.starts_with(b"\0asm") {
        return Sniffed::new(Executable, "WebAssembly", Some("application/wasm"));
    }
    if b.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) && is_msi(b) {
        return Sniffed::new(Executable, "MSI installer", Some("application/x-msi"));
    }
    if b.starts_with(b"L\0\0\0\x01\x14\x02\0") {
        return Sniffed::new(Executable, "Windows shortcut (LNK)", None);
    }
    let text = {
        // Skip a UTF-8 byte order mark and leading blanks.
        let t = b.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(b);
        let start = t.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(t.len());
        &t[start..]
    };
    if text.starts_with(b"#!") {
        return Sniffed::new(Script, "shell script (#!)", Some("text/x-shellscript"));
    }
    let head = head_lower(text, 4096);
    if head.contains("<hta:application") {
        return Sniffed::new(Script, "HTML application (HTA)", Some("application/hta"));
    }
    let markup = head.starts_with("<!doctype html") || head.starts_with("<html") || head.starts_with("<?xml") || head.starts_with("<svg") || head.starts_with("<head") || head.starts_with("<script");
    if markup {
        let whole = head_lower(text, 1 << 20);
        let scripted = whole.contains("<script") || whole.contains("javascript:") || whole.contains(" onload=") || whole.contains(" onerror=");
        if whole.contains("<svg") && !whole.contains("<html") {
            return if scripted {
                Sniffed::new(Script, "SVG with script", Some("image/svg+xml"))
            } else {
                Sniffed::new(Image, "SVG", Some("image/svg+xml"))
            };
        }
        if whole.contains("<html") || head.starts_with("<script") {
            return if scripted {
                Sniffed::new(Script, "HTML with script", Some("text/html"))
            } else {
                Sniffed::new(Document, "HTML", Some("text/html"))
            };
        }
    }
    if let Some(names) = b.starts_with(b"PK\x03\x04").then(|| zip_entry_names(b)).flatten() {
        if names.iter().any(|n| n.ends_with(".class") || n.eq_ignore_ascii_case("META-INF/MANIFEST.MF")) {
            return Sniffed::new(Executable, "JAR (Java archive)", Some("application/java-archive"));
        }
        if names.iter().any(|n| n == "classes.dex" || n == "AndroidManifest.xml") {
            return Sniffed::new(Executable, "APK (Android package)", Some("application/vnd.android.package-archive"));
        }
        if let Some(n) = names.iter().find(|n| matches!(category_of_name(n), Some(Executable | Script))) {
            return Sniffed::new(Executable, format!("archive containing {n}"), Some("application/zip"));
        }
    }
    match infer::get(b) {
        Some(t) => {
            let cat = match t.matcher_type() {
                infer::MatcherType::Image => Image,
                infer::MatcherType::Audio => Audio,
                infer::MatcherType::Video => Video,
                infer::MatcherType::Archive => Archive,
                infer::MatcherType::App => Executable,
                _ => Document,
            };
            Sniffed::new(cat, t.extension().to_ascii_uppercase(), Some(t.mime_type()))
        }
        None => Sniffed::new(Document, "data", None),
    }
}

/// The text of a refusal for a file whose content is `found`, declared as `name` with
/// `content_type`: "executable disguised as image (PE)" or "executable files are not
/// allowed (PE)".
pub fn refusal_text(found: &Sniffed, name: &str, content_type: &str) -> String {
    let claimed = category_of_mime(content_type).or_else(|| category_of_name(name));
    match claimed {
        Some(c) if c != found.category => format!("{} disguised as {} ({})", found.category.as_str(), c.as_str(), found.label),
        _ => format!("{} files are not allowed ({})", found.category.as_str(), found.label),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_with(names: &[&str]) -> Vec<u8> {
        // A minimal stored ZIP: local headers, central directory, end record.
        let mut out = Vec::new();
        let mut central = Vec::new();
        for n in names {
            let off = u32::try_from(out.len()).unwrap();
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&u16::try_from(n.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(n.as_bytes());
            central.extend_from_slice(b"PK\x01\x02");
            central.extend_from_slice(&[0u8; 24]);
            central.extend_from_slice(&u16::try_from(n.len()).unwrap().to_le_bytes());
            central.extend_from_slice(&[0u8; 12]);
            central.extend_from_slice(&off.to_le_bytes());
            central.extend_from_slice(n.as_bytes());
        }
        let cd_off = u32::try_from(out.len()).unwrap();
        let cd_len = u32::try_from(central.len()).unwrap();
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        let n = u16::try_from(names.len()).unwrap().to_le_bytes();
        out.extend_from_slice(&n);
        out.extend_from_slice(&n);
        out.extend_from_slice(&cd_len.to_le_bytes());
        out.extend_from_slice(&cd_off.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn programs_are_found_by_content() {
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0PE\0\0").label, "PE");
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01").category, Category::Executable);
        assert_eq!(sniff(&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]).label, "Mach-O");
        assert_eq!(sniff(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52]).label, "Java class");
        assert_eq!(sniff(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 2]).label, "Mach-O");
        assert_eq!(sniff(b"#!/bin/sh\nrm -rf ~\n").category, Category::Script);
        assert_eq!(sniff(b"  <html><head><HTA:APPLICATION id=x>").category, Category::Script);
        assert_eq!(sniff(b"<!DOCTYPE html><html><script>alert(1)</script>").category, Category::Script);
        assert_eq!(sniff(b"<!DOCTYPE html><html><p>hi</p></html>").category, Category::Document);
        assert_eq!(sniff(b"<svg xmlns='http://www.w3.org/2000/svg' onload='x()'/>").category, Category::Script);
    }

    #[test]
    fn zips_with_programs_are_executables() {
        assert_eq!(sniff(&zip_with(&["META-INF/MANIFEST.MF", "a/B.class"])).label, "JAR (Java archive)");
        assert_eq!(sniff(&zip_with(&["classes.dex"])).label, "APK (Android package)");
        let s = sniff(&zip_with(&["docs/readme.txt", "invoice.pdf.exe"]));
        assert_eq!((s.category, s.label.as_str()), (Category::Executable, "archive containing invoice.pdf.exe"));
        assert_eq!(sniff(&zip_with(&["a.txt", "b.png"])).category, Category::Archive);
        // Truncated or hostile central directories do not panic.
        let z = zip_with(&["a.txt"]);
        for cut in 0..z.len() {
            let _ = zip_entry_names(&z[..cut]);
        }
    }

    #[test]
    fn media_and_plain_data() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff(png).category, Category::Image);
        assert_eq!(sniff(b"hello world").category, Category::Document);
        assert_eq!(sniff(b"").category, Category::Document);
    }

    #[test]
    fn refusals_say_what_was_claimed() {
        let pe = sniff(b"MZ\x90\0");
        assert_eq!(refusal_text(&pe, "cat.jpg", "image/jpeg"), "executable disguised as image (PE)");
        assert_eq!(refusal_text(&pe, "setup.exe", "application/octet-stream"), "executable files are not allowed (PE)");
        assert_eq!(category_of_name("x.tar.GZ"), Some(Category::Archive));
        assert_eq!(category_of_name("noext"), None);
        assert_eq!(category_of_mime("image/png; q=1"), Some(Category::Image));
        assert_eq!(category_of_mime("text/html"), Some(Category::Document));
        assert_eq!(category_of_mime("application/x-sh"), Some(Category::Script));
    }
}
