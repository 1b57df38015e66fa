//! A small TCP server that prints the real client of each connection.
//!
//! `toa_server ADDR PORT [COUNT]`: listens, and for each of COUNT (default 1)
//! connections prints `accept=<addr> getpeername=<addr> real=<addr>`.

use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: {} ADDR PORT [COUNT]", args[0]);
        std::process::exit(2);
    }
    let ip: std::net::IpAddr = args[1].parse().expect("ADDR");
    let port: u16 = args[2].parse().expect("PORT");
    let count: usize = args.get(3).map_or(1, |c| c.parse().expect("COUNT"));
    let listener = TcpListener::bind((ip, port))?;
    println!("ready");
    for _ in 0..count {
        let (stream, accepted) = listener.accept()?;
        let peer = stream.peer_addr()?;
        let real = toa_client::real_peer(&stream)?;
        println!("accept={accepted} getpeername={peer} real={real}");
    }
    Ok(())
}
