//! `runnel bench loopback`: one TCP stream over 127.0.0.1, a writer thread sending
//! `--buffer-bytes` writes as fast as it can and a reader thread discarding them, for
//! `--duration`. No broker and no protocol: the most one connection can carry on this
//! machine, which is what a single producer's or consumer's connection is bounded by.
//! (`scripts/machine-limits` measures the same with iperf3 when it is installed.)
//!
//! Plain blocking sockets on two threads, like iperf3's single stream; both threads share
//! the machine's cores with nothing else of ours, so on two cores this is also roughly what
//! two busy processes (broker and client) leave for the copy.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::args::LoopbackArgs;
use super::cpu::CpuMeter;

#[derive(Debug, Serialize)]
struct LoopbackResult {
    bench: &'static str,
    bytes: u64,
    seconds: f64,
    megabytes_per_second: f64,
    buffer_bytes: u32,
    cpu: super::cpu::CpuUse,
}

pub fn run(args: LoopbackArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let address = listener.local_addr()?;
    let buffer_bytes = args.buffer_bytes as usize;
    let reader = std::thread::spawn(move || -> std::io::Result<(u64, Instant)> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; buffer_bytes];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buffer)? {
                0 => return Ok((total, Instant::now())),
                n => total += n as u64,
            }
        }
    });
    let mut stream = TcpStream::connect(address).context("connecting over loopback")?;
    stream.set_nodelay(true)?;
    let buffer = vec![b'x'; buffer_bytes];
    let cpu = CpuMeter::start(None);
    let started = Instant::now();
    while started.elapsed() < args.duration {
        stream.write_all(&buffer)?;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let (bytes, finished) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?
        .context("reading the loopback stream")?;
    let seconds = finished.duration_since(started).as_secs_f64().max(1e-9);
    let result = LoopbackResult {
        bench: "loopback",
        bytes,
        seconds,
        megabytes_per_second: bytes as f64 / seconds / 1e6,
        buffer_bytes: args.buffer_bytes,
        cpu: cpu.finish(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "loopback: {:.1} MB in {:.2} s: {:.1} MB/s, one TCP stream, {} byte writes",
            bytes as f64 / 1e6,
            seconds,
            result.megabytes_per_second,
            args.buffer_bytes
        );
        result.cpu.print_human();
    }
    Ok(ExitCode::SUCCESS)
}
