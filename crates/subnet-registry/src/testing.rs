//! A throwaway etcd server for tests: the `etcd` binary (Debian package
//! `etcd-server`) on free loopback ports with a temporary data folder,
//! optionally serving TLS with certificates made by [`TestPki::create`].

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to respond.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running etcd server, stopped and deleted on drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<TestPki>,
    /// Whether the v2 keys API is served (`--enable-v2=true`).
    v2: bool,
}

/// Certificates for a TLS test: a CA, a server certificate for 127.0.0.1
/// and a client certificate, all PEM files in one folder.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate that signed the other two.
    pub ca_file: PathBuf,
    /// The server certificate, valid for IP 127.0.0.1.
    pub server_cert_file: PathBuf,
    /// The server's private key.
    pub server_key_file: PathBuf,
    /// The client certificate.
    pub client_cert_file: PathBuf,
    /// The client's private key.
    pub client_key_file: PathBuf,
}

impl TestPki {
    /// Creates the CA and the two certificates in `dir` with the `openssl`
    /// command.
    pub fn create(dir: &Path) -> Result<Self, EtcdServerError> {
        let pki = Self {
            ca_file: dir.join("ca.pem"),
            server_cert_file: dir.join("server.pem"),
            server_key_file: dir.join("server-key.pem"),
            client_cert_file: dir.join("client.pem"),
            client_key_file: dir.join("client-key.pem"),
        };
        let ca_key = dir.join("ca-key.pem");
        let extensions = dir.join("server-ext.cnf");
        std::fs::write(
            &extensions,
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )?;
        let client_extensions = dir.join("client-ext.cnf");
        std::fs::write(&client_extensions, "extendedKeyUsage=clientAuth\n")?;

        let path = |path: &PathBuf| path.display().to_string();
        openssl(&[
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
            "/CN=flannel-rs test CA",
            "-keyout",
            &path(&ca_key),
            "-out",
            &path(&pki.ca_file),
        ])?;
        for (name, cert, key, extensions) in [
            (
                "127.0.0.1",
                &pki.server_cert_file,
                &pki.server_key_file,
                &extensions,
            ),
            (
                "client",
                &pki.client_cert_file,
                &pki.client_key_file,
                &client_extensions,
            ),
        ] {
            let request = dir.join(format!("{name}.csr"));
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &path(key),
                "-out",
                &path(&request),
            ])?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &path(&request),
                "-CA",
                &path(&pki.ca_file),
                "-CAkey",
                &path(&ca_key),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &path(extensions),
                "-out",
                &path(cert),
            ])?;
        }
        Ok(pki)
    }
}

fn openssl(args: &[&str]) -> Result<(), EtcdServerError> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => EtcdServerError::OpensslNotInstalled,
            _ => EtcdServerError::Io(error),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(EtcdServerError::Openssl {
        args: args.join(" "),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Starting or restarting the test server failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    /// The `etcd` binary is not installed.
    #[error("etcd not found on PATH: apt-get install etcd-server")]
    NotInstalled,
    /// The `openssl` command is not installed.
    #[error("openssl not found on PATH: apt-get install openssl")]
    OpensslNotInstalled,
    /// Making a test certificate failed.
    #[error("openssl {args} failed: {stderr}")]
    Openssl {
        /// The arguments given.
        args: String,
        /// Its standard error output.
        stderr: String,
    },
    /// A temporary folder or a port could not be had, or etcd failed to
    /// start.
    #[error("starting etcd: {0}")]
    Io(#[from] std::io::Error),
    /// etcd exited while starting.
    #[error("etcd exited while starting with {status}; its log is in {log}", log = log.display())]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its output.
        log: PathBuf,
    },
    /// etcd did not respond in time.
    #[error("etcd did not respond on {endpoint} within {timeout:?}; its log is in {log}", log = log.display())]
    Timeout {
        /// The client URL polled.
        endpoint: String,
        /// How long it was given.
        timeout: Duration,
        /// Its output.
        log: PathBuf,
    },
}

impl EtcdServer {
    /// Starts a single-member etcd on two free loopback ports and waits
    /// until it responds.
    pub fn start() -> Result<Self, EtcdServerError> {
        Self::start_with(None, false)
    }

    /// Starts a server that serves clients over TLS with `pki`'s server
    /// certificate and requires client certificates signed by its CA.
    pub fn start_tls(pki: TestPki) -> Result<Self, EtcdServerError> {
        Self::start_with(Some(pki), false)
    }

    /// Starts a server that also serves the etcd v2 keys API, which etcd
    /// 3.4 leaves off unless started with `--enable-v2=true`.
    pub fn start_v2() -> Result<Self, EtcdServerError> {
        Self::start_with(None, true)
    }

    /// Starts a TLS server, as [`start_tls`](Self::start_tls) does, that
    /// also serves the etcd v2 keys API.
    pub fn start_tls_v2(pki: TestPki) -> Result<Self, EtcdServerError> {
        Self::start_with(Some(pki), true)
    }

    fn start_with(tls: Option<TestPki>, v2: bool) -> Result<Self, EtcdServerError> {
        let data_dir = tempfile::Builder::new().prefix("etcd-test-").tempdir()?;
        let mut server = Self {
            child: None,
            data_dir,
            client_port: free_port()?,
            peer_port: free_port()?,
            tls,
            v2,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Returns the client URL, such as `http://127.0.0.1:40123`, or `https://` for
    /// a TLS server.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Returns the folder that contains the data and `etcd.log`.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Kills the server at once (SIGKILL), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports with the same data, and
    /// waits until it responds. Kills it first if it is running.
    pub fn restart(&mut self) -> Result<(), EtcdServerError> {
        self.kill();
        self.spawn()
    }

    /// Runs `etcdctl` (API v3) against this server and returns its standard
    /// output; fails with its standard error.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()));
        if let Some(pki) = &self.tls {
            command
                .arg(format!("--cacert={}", pki.ca_file.display()))
                .arg(format!("--cert={}", pki.client_cert_file.display()))
                .arg(format!("--key={}", pki.client_key_file.display()));
        }
        run_etcdctl(command, args)
    }

    /// Runs `etcdctl` with the v2 API (`ETCDCTL_API=2`, as in
    /// `etcdctl set` and `etcdctl ls`) against this server and returns its
    /// standard output; fails with its standard error. The server must have
    /// been started with the v2 API.
    pub fn etcdctl_v2(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "2")
            .arg(format!("--endpoints={}", self.endpoint()));
        if let Some(pki) = &self.tls {
            command
                .arg(format!("--ca-file={}", pki.ca_file.display()))
                .arg(format!("--cert-file={}", pki.client_cert_file.display()))
                .arg(format!("--key-file={}", pki.client_key_file.display()));
        }
        run_etcdctl(command, args)
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("etcd.log")
    }

    fn spawn(&mut self) -> Result<(), EtcdServerError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new("etcd");
        if self.v2 {
            command.arg("--enable-v2=true");
        }
        if let Some(pki) = &self.tls {
            command
                .arg(format!("--cert-file={}", pki.server_cert_file.display()))
                .arg(format!("--key-file={}", pki.server_key_file.display()))
                .arg(format!("--trusted-ca-file={}", pki.ca_file.display()))
                .arg("--client-cert-auth");
        }
        let child = command
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.data_dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => EtcdServerError::NotInstalled,
                _ => EtcdServerError::Io(error),
            })?;
        self.child = Some(child);
        self.wait_until_ready()
    }

    /// Polls `/health` until etcd reports a leader.
    fn wait_until_ready(&mut self) -> Result<(), EtcdServerError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(EtcdServerError::Exited {
                        status,
                        log: self.log_path(),
                    });
                }
            }
            let healthy = match self.tls {
                None => health_ok(self.client_port),
                Some(_) => self.etcdctl(&["endpoint", "health"]).is_ok(),
            };
            if healthy {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(EtcdServerError::Timeout {
                    endpoint: self.endpoint(),
                    timeout: START_TIMEOUT,
                    log: self.log_path(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a prepared `etcdctl` command with `args` and returns its standard
/// output, or its standard error as the error.
fn run_etcdctl(mut command: Command, args: &[&str]) -> Result<String, String> {
    let output = command
        .args(args)
        .output()
        .map_err(|error| format!("running etcdctl: {error} (apt-get install etcd-client)"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "etcdctl {} failed with {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Asks the kernel for a free loopback port. Another process could take it
/// before etcd binds it; that shows as a start failure naming the log.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends `GET /health` and returns whether etcd reports itself healthy.
fn health_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}
