//! A local AWS-compatible server (moto) on 127.0.0.1 for the tests of the
//! AWS paths: `tests/lakehouse/moto_server.py` (moto, with Kinesis resharding
//! and Glue's optimistic lock as AWS does them) on the Python of the
//! project's venv, which `scripts/test.sh` installs. `AUTHPULSE_MOTO_SERVER`
//! names another server command instead.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use authpulse::aws::AwsSettings;

/// A running server, stopped when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let (server, script) = match std::env::var_os("AUTHPULSE_MOTO_SERVER") {
            Some(command) => (PathBuf::from(command), None),
            None => (
                root.join(".venv/bin/python"),
                Some(root.join("tests/lakehouse/moto_server.py")),
            ),
        };
        assert!(
            server.exists(),
            "{} not found: run the tests with scripts/test.sh (it installs moto), or name a moto server command in AUTHPULSE_MOTO_SERVER",
            server.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&server)
            .args(script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: set before any client is built; every test of a binary
        // that uses the server talks to it with these throwaway credentials.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
        Moto { child, url }
    }

    /// Settings that point every client at this server.
    pub fn aws(&self) -> AwsSettings {
        AwsSettings {
            region: Some("us-east-1".into()),
            endpoint: Some(self.url.clone()),
        }
    }

    /// The environment a child `authpulse` needs to talk to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ENDPOINT_URL", self.url.clone()),
        ]
    }
}

impl Moto {
    /// Creates an S3 bucket.
    pub fn create_bucket(&self, bucket: &str) {
        self.put(&format!("/{bucket}"), b"");
    }

    /// Writes an S3 object.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let builder = opendal::services::S3::default()
            .bucket(bucket)
            .region("us-east-1")
            .endpoint(&self.url)
            .access_key_id("testing")
            .secret_access_key("testing");
        let operator = opendal::Operator::new(builder).unwrap().finish();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(operator.write(key, body.to_vec()))
            .unwrap_or_else(|e| panic!("put s3://{bucket}/{key}: {e}"));
    }

    /// An unsigned PUT (the server creates buckets for it).
    fn put(&self, path: &str, body: &[u8]) {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(
            stream,
            "PUT {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(body).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "PUT {path}: {answer}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
