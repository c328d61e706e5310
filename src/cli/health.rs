//! `sslmem health`: probes a running service over plain HTTP/1.1, for container health
//! checks in images that have no curl.

use clap::Args;
use sslmem::error::{Error, Result};

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// Host to probe (the service's --host 0.0.0.0 is probed on 127.0.0.1).
    #[arg(long, env = "SSLMEM_HOST", default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, env = "SSLMEM_PORT", default_value_t = 8080)]
    pub port: u16,
    /// /healthz (alive) or /readyz (ready for traffic).
    #[arg(long, env = "SSLMEM_HEALTH_PATH", default_value = "/healthz")]
    pub path: String,
    /// Seconds to wait for an answer.
    #[arg(long, env = "SSLMEM_HEALTH_TIMEOUT", default_value_t = 3.0)]
    pub timeout: f64,
}

/// `GET path` over plain HTTP/1.1; `Ok(true)` on status 200.
pub fn run(a: &HealthArgs) -> Result<bool> {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return Err(Error::Param(
            "--timeout must be a positive number of seconds".into(),
        ));
    }
    let timeout = Duration::from_secs_f64(a.timeout);
    let host = match a.host.as_str() {
        "0.0.0.0" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h,
    };
    let addr = (host, a.port)
        .to_socket_addrs()
        .map_err(|e| Error::Param(format!("{host}:{}: {e}", a.port)))?
        .next()
        .ok_or_else(|| Error::Param(format!("{host}: no address")))?;
    let fail = |e: std::io::Error| Error::Service(format!("{addr}{}: {e}", a.path));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    s.set_read_timeout(Some(timeout)).map_err(fail)?;
    s.set_write_timeout(Some(timeout)).map_err(fail)?;
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        a.path
    )
    .map_err(fail)?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..]).map_err(fail)? {
            0 => break,
            k => n += k,
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("none");
    if status == "200" {
        Ok(true)
    } else {
        eprintln!("{addr}{}: status {status}", a.path);
        Ok(false)
    }
}
