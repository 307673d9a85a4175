//! A real etcd server for the store tests (Debian's `etcd-server`): started inside a namespace
//! the test made, on that namespace's address, with a temporary data directory; stopped by PID
//! and its directory removed on drop. Keys are written and read through etcd's own JSON
//! gateway (`/v3/kv/...`) with curl, so the tests do not go through vtepd's client.
#![allow(dead_code)]

use super::daemon_support::{Netns, run, unique, wait_until};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

/// An etcd server in a namespace.
#[derive(Debug)]
pub struct Etcd {
    /// Its client URL, `http://ADDR:2379`.
    pub url: String,
    ns_name: String,
    addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Etcd {
    /// Starts etcd in `ns` on `addr` (an address `ns` holds; an IPv6 one in brackets, as in a
    /// URL) and waits (≤ 10 s) until it answers.
    pub fn start(ns: &Netns, addr: &str) -> Etcd {
        let dir = std::env::temp_dir().join(unique("etcd"));
        let mut e = Etcd {
            url: format!("http://{addr}:2379"),
            ns_name: ns.name.clone(),
            addr: addr.to_owned(),
            dir,
            child: None,
        };
        e.spawn(ns);
        e
    }

    fn spawn(&mut self, ns: &Netns) {
        let log = std::fs::File::create(self.dir.with_extension("log")).unwrap();
        let peer = "http://127.0.0.1:2380";
        let child = ns
            .cmd("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args([
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("cannot start etcd (scripts/setup.sh installs etcd-server)");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || {
            self.curl_in(ns, &["-sf", &format!("{}/health", self.url)])
                .is_some_and(|o| o.contains("true"))
        });
        assert!(up, "etcd did not start: {}", self.log());
    }

    /// Stops etcd (SIGTERM by PID, then waits), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = run(std::process::Command::new("kill").args(["-TERM", &c.id().to_string()]));
            if !wait_until(Duration::from_secs(10), || {
                matches!(c.try_wait(), Ok(Some(_)))
            }) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    /// Starts etcd again on its data (after [`Etcd::stop`]).
    pub fn restart(&mut self, ns: &Netns) {
        assert_eq!(ns.name, self.ns_name);
        self.spawn(ns);
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    fn curl_in(&self, ns: &Netns, args: &[&str]) -> Option<String> {
        let out = run(ns.cmd("curl").args(["-m", "3"]).args(args));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes `value` at `key` through etcd's JSON gateway (run in `ns`).
    pub fn put(&self, ns: &Netns, key: &str, value: &[u8]) {
        let body = serde_json::json!({"key": b64(key.as_bytes()), "value": b64(value)});
        let out = self.curl_in(
            ns,
            &[
                "-sf",
                "-X",
                "POST",
                &format!("{}/v3/kv/put", self.url),
                "-d",
                &body.to_string(),
            ],
        );
        assert!(out.is_some(), "cannot put {key} into etcd: {}", self.log());
    }

    /// The keys under `prefix` (run in `ns`).
    pub fn keys(&self, ns: &Netns, prefix: &str) -> Vec<String> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let body = serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end), "keys_only": true});
        let out = self
            .curl_in(
                ns,
                &[
                    "-sf",
                    "-X",
                    "POST",
                    &format!("{}/v3/kv/range", self.url),
                    "-d",
                    &body.to_string(),
                ],
            )
            .unwrap_or_else(|| panic!("cannot read etcd: {}", self.log()));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|kv| kv["key"].as_str().and_then(unb64))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Etcd {
    /// A POST of `body` to the JSON gateway's `path` (run in `ns`): the answer.
    fn post(&self, ns: &Netns, path: &str, body: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.url);
        let out = self
            .curl_in(ns, &["-sf", "-X", "POST", &url, "-d", body])
            .unwrap_or_else(|| panic!("etcd {path} failed: {}", self.log()));
        serde_json::from_str(&out).unwrap()
    }

    /// Deletes `key` (run in `ns`).
    pub fn delete(&self, ns: &Netns, key: &str) {
        let body = serde_json::json!({"key": b64(key.as_bytes())});
        self.post(ns, "/v3/kv/deleterange", &body.to_string());
    }

    /// Writes `len` bytes at `key`, `times` times over (one revision each), with one curl.
    pub fn put_repeated(&self, ns: &Netns, key: &str, len: usize, times: usize) {
        let body = serde_json::json!({"key": b64(key.as_bytes()), "value": b64(&vec![b'x'; len])});
        let file = self.dir.with_extension("put.json");
        std::fs::write(&file, body.to_string()).unwrap();
        let (url, data) = (
            format!("{}/v3/kv/put", self.url),
            format!("@{}", file.display()),
        );
        let mut args: Vec<&str> = Vec::new();
        for i in 0..times {
            if i > 0 {
                args.push("--next");
            }
            args.extend_from_slice(&["-sf", "-o", "/dev/null", "-X", "POST", &url, "-d", &data]);
        }
        let out = run(ns.cmd("curl").args(["-m", "30"]).args(&args));
        let _ = std::fs::remove_file(&file);
        assert!(out.status.success(), "cannot put {key}: {}", self.log());
    }

    /// Compacts the store's history up to its current revision (run in `ns`); returns it.
    pub fn compact(&self, ns: &Netns) -> i64 {
        let body = serde_json::json!({"key": b64(b"\0"), "count_only": true});
        let v = self.post(ns, "/v3/kv/range", &body.to_string());
        let rev: i64 = v["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no revision in {v}"));
        let body = serde_json::json!({"revision": rev.to_string(), "physical": true});
        self.post(ns, "/v3/kv/compaction", &body.to_string());
        rev
    }

    /// Revokes every lease (as if each had expired): their keys go at once.
    pub fn revoke_all_leases(&self, ns: &Netns) -> usize {
        let v = self.post(ns, "/v3/lease/leases", "{}");
        let ids: Vec<String> = v["leases"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|x| x["ID"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            self.post(ns, "/v3/lease/revoke", &format!("{{\"ID\":\"{id}\"}}"));
        }
        ids.len()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("log"));
    }
}

/// Standard base64, as etcd's JSON gateway carries keys and values.
fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &str) -> Option<String> {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    String::from_utf8(b).ok()
}
