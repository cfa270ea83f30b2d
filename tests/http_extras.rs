//! The listener's HTTP side, with raw HTTP/1.1 strings: CORS (allow-list,
//! credentials, preflight), a custom path, restricted transports and
//! upgrades, the client bundle, and static files.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use iobus::engine::{Cors, CorsOrigins};
use iobus::{Server, ServerOptions};

struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Reply { status, head: head.to_owned(), body: body.to_owned() }
}

fn start(options: ServerOptions) -> (Server, SocketAddr) {
    let server = Server::new(options);
    let addr = server.start("127.0.0.1:0").unwrap();
    (server, addr)
}

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

#[test]
fn cors_allow_list_with_credentials_and_preflight() {
    let mut o = ServerOptions::default();
    o.engine.cors = Some(Cors {
        origins: CorsOrigins::List(vec!["https://good.example".into()]),
        credentials: true,
        max_age: Some(600),
    });
    let (_server, addr) = start(o);

    let ok = request(addr, "GET", HANDSHAKE, &[("Origin", "https://good.example")]);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("access-control-allow-origin").as_deref(), Some("https://good.example"));
    assert_eq!(ok.header("access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(ok.header("vary").as_deref(), Some("Origin"));

    let other = request(addr, "GET", HANDSHAKE, &[("Origin", "https://evil.example")]);
    assert_eq!(other.status, 200, "the request is served; the browser enforces the missing header");
    assert_eq!(other.header("access-control-allow-origin"), None);

    let pre = request(
        addr,
        "OPTIONS",
        HANDSHAKE,
        &[("Origin", "https://good.example"), ("Access-Control-Request-Headers", "x-token")],
    );
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin").as_deref(), Some("https://good.example"));
    assert_eq!(pre.header("access-control-allow-headers").as_deref(), Some("x-token"));
    assert_eq!(pre.header("access-control-max-age").as_deref(), Some("600"));
    assert!(pre.header("access-control-allow-methods").unwrap_or_default().contains("POST"));
}

#[test]
fn no_cors_headers_unless_configured() {
    let (_server, addr) = start(ServerOptions::default());
    let r = request(addr, "GET", HANDSHAKE, &[("Origin", "https://any.example")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn custom_path_and_restricted_transports() {
    let mut o = ServerOptions::default();
    o.engine.path = "/rt/".into();
    o.engine.polling = false;
    let (_server, addr) = start(o);
    let wrong_path = request(addr, "GET", HANDSHAKE, &[]);
    assert_eq!(wrong_path.status, 404);
    let polling = request(addr, "GET", "/rt/?EIO=4&transport=polling", &[]);
    assert_eq!(polling.status, 400);
    assert_eq!(polling.body, "{\"code\":0,\"message\":\"Transport unknown\"}");
}

#[test]
fn upgrades_can_be_turned_off() {
    let mut o = ServerOptions::default();
    o.engine.allow_upgrades = false;
    let (_server, addr) = start(o);
    let r = request(addr, "GET", HANDSHAKE, &[]);
    assert!(r.body.contains("\"upgrades\":[]"), "{}", r.body);
}

#[test]
fn client_bundle_is_served_or_clearly_missing() {
    let dir = std::env::temp_dir().join(format!("iobus-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("socket.io.js"), "/* bundle */").unwrap();
    std::fs::write(dir.join("socket.io.min.js"), "/*min*/").unwrap();
    let o = ServerOptions { client_dir: Some(dir.clone()), ..ServerOptions::default() };
    let (_server, addr) = start(o);
    let js = request(addr, "GET", "/socket.io/socket.io.js", &[]);
    assert_eq!(js.status, 200);
    assert_eq!(js.body, "/* bundle */");
    assert!(js.header("content-type").unwrap_or_default().starts_with("application/javascript"));
    assert_eq!(request(addr, "GET", "/socket.io/socket.io.min.js", &[]).body, "/*min*/");
    let missing = request(addr, "GET", "/socket.io/socket.io.js.map", &[]);
    assert_eq!(missing.status, 404);

    let o = ServerOptions { client_dir: Some(dir.join("nowhere")), ..ServerOptions::default() };
    let (_server2, addr2) = start(o);
    let absent = request(addr2, "GET", "/socket.io/socket.io.js", &[]);
    assert_eq!(absent.status, 404);
    assert!(absent.body.contains("not installed"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn static_files_without_escaping_the_directory() {
    let root = std::env::temp_dir().join(format!("iobus-static-{}", std::process::id()));
    let public = root.join("public");
    std::fs::create_dir_all(public.join("sub")).unwrap();
    std::fs::write(public.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(public.join("sub/app.css"), "body{}").unwrap();
    std::fs::write(root.join("secret.txt"), "secret").unwrap();
    let o = ServerOptions { static_dir: Some(public), ..ServerOptions::default() };
    let (_server, addr) = start(o);

    let index = request(addr, "GET", "/", &[]);
    assert_eq!(index.status, 200);
    assert_eq!(index.body, "<h1>hi</h1>");
    assert!(index.header("content-type").unwrap_or_default().starts_with("text/html"));
    let css = request(addr, "GET", "/sub/app.css", &[]);
    assert_eq!((css.status, css.body.as_str()), (200, "body{}"));
    assert!(css.header("content-type").unwrap_or_default().starts_with("text/css"));
    for escape in ["/../secret.txt", "/%2e%2e/secret.txt", "/sub/../../secret.txt"] {
        let r = request(addr, "GET", escape, &[]);
        assert_eq!(r.status, 404, "{escape}");
        assert!(!r.body.contains("secret"));
    }
    assert_eq!(request(addr, "GET", "/nope.html", &[]).status, 404);
    assert_eq!(request(addr, "POST", "/index.html", &[]).status, 404);
    let _ = std::fs::remove_dir_all(root);
}
