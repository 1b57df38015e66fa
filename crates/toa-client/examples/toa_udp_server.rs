//! A small UDP echo server that prints the real client of each datagram.
//!
//! `toa_udp_server ADDR PORT [COUNT]`: for each of COUNT (default 1)
//! datagrams prints `from=<addr> real=<addr>` and sends the payload back
//! to where it came from.

use std::net::UdpSocket;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: {} ADDR PORT [COUNT]", args[0]);
        std::process::exit(2);
    }
    let ip: std::net::IpAddr = args[1].parse().expect("ADDR");
    let port: u16 = args[2].parse().expect("PORT");
    let count: usize = args.get(3).map_or(1, |c| c.parse().expect("COUNT"));
    let socket = UdpSocket::bind((ip, port))?;
    println!("ready");
    let mut buf = [0u8; 65536];
    for _ in 0..count {
        let (n, from) = socket.recv_from(&mut buf)?;
        let real = toa_client::real_source(&socket, from)?;
        println!("from={from} real={real}");
        socket.send_to(&buf[..n], from)?;
    }
    Ok(())
}
