//! What toa's test tools share: the tun device (the in-VM suite's wire to
//! its test peer, and the NAT64 translator's in `toa-balancer`).

pub mod tun;
