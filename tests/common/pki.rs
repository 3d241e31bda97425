//! Certificates made with `openssl` for the TLS tests, in a temp dir: a CA,
//! a server certificate for 127.0.0.1 / localhost signed by it, a client
//! certificate signed by it, and a second CA that signed neither.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::TempDir;

pub struct Pki {
    dir: TempDir,
}

impl Pki {
    /// `ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key`
    /// (subject `client_subject`, e.g. `/O=balance`: with etcd's auth on, its
    /// JSON gateway refuses a client certificate that has a CN) and
    /// `other-ca.pem`.
    pub fn new(client_subject: &str) -> Pki {
        let dir = TempDir::new("pki");
        let p = Pki { dir };
        p.ca("ca");
        p.ca("other-ca");
        p.leaf(
            "server",
            "/CN=etcd",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        p.leaf(
            "client",
            client_subject,
            "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:balance.test\n",
        );
        p
    }

    /// A file of this set.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ca(&self, name: &str) {
        self_signed(self.dir.path(), name, &format!("/CN=balance test {name}"));
    }

    fn leaf(&self, name: &str, subject: &str, ext: &str) {
        std::fs::write(self.path(&format!("{name}.ext")), ext).expect("write ext");
        openssl(
            self.dir.path(),
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

/// A self-signed certificate (EC P-256) for `subject`, as `NAME.pem` and
/// its key `NAME.key` in `dir`.
pub fn self_signed(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
