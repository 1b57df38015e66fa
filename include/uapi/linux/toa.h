/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * toa: the application interface of the toa kernel module.
 *
 * toa makes accept(), accept4() and getpeername() return the real client of
 * a connection that came through a FULLNAT load balancer. When the client
 * cannot be shown there (an IPv6 client on an IPv4 socket: NAT64), ask:
 *
 *	struct toa_nat64_peer peer;
 *	socklen_t len = sizeof(peer);
 *	if (getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP, &peer, &len) == 0)
 *		... peer.saddr (IPv6; an IPv4 client as ::ffff:a.b.c.d),
 *		    ntohs(peer.sport) ...
 *
 * The call works on IPv4 and IPv6 TCP sockets alike. Errors:
 *	EINVAL       len is smaller than sizeof(struct toa_nat64_peer)
 *	ENOENT       no client address recorded on this socket (a direct
 *	             connection, or no/an untrusted TOA option)
 *	EOPNOTSUPP   not a TCP socket
 *	ENOPROTOOPT  the toa module is not loaded
 *	EFAULT       the buffer is not writable
 * A failed call changes neither the socket nor len.
 *
 * UDP: toa shows the client of a balancer's UDP flow on every receive path
 * and sends replies to it back through the balancer, so recvfrom() and
 * sendto() just work. Applications written for DPVS's UOA ask instead:
 *
 *	struct uoa_param_map map = { .af = AF_INET, .sport = from.sin_port,
 *				     .dport = htons(local_port) };
 *	socklen_t len = sizeof(map);
 *	memcpy(&map.saddr.in, &from.sin_addr, 4);	// what recvfrom() gave
 *	if (getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP, &map, &len) == 0)
 *		... map.real_af, map.real_saddr, ntohs(map.real_sport) ...
 *
 * saddr/sport are the source recvfrom() returned (the balancer's, or the
 * client itself while toa rewrites), daddr/dport the local address and port
 * (daddr all zero: any). The answer may be IPv6 for an IPv4 socket (NAT64).
 * Errors: EINVAL (len below sizeof(struct uoa_param_map), 58, or af not
 * AF_INET/AF_INET6), ENOENT (no live flow), ENOPROTOOPT (toa not loaded).
 */
#ifndef _UAPI_LINUX_TOA_H
#define _UAPI_LINUX_TOA_H

#ifdef __KERNEL__
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/types.h>
#define TOA_U16 __u16
#define TOA_BE16 __be16
#else
#include <netinet/in.h>
#include <stdint.h>
#define TOA_U16 uint16_t
#define TOA_BE16 uint16_t
#endif

/* getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP, ...) */
#define TOA_SO_GET_LOOKUP 4096

/* What TOA_SO_GET_LOOKUP returns: the client's address and port. */
struct toa_nat64_peer {
	struct in6_addr saddr;	/* IPv6, or IPv4-mapped ::ffff:a.b.c.d */
	TOA_BE16 sport;		/* network byte order */
};

/* getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP, ...) (DPVS's number) */
#define UOA_SO_GET_LOOKUP 2048

/* An IPv4 (the first 4 bytes) or IPv6 address. */
union toa_inet_addr {
	struct in_addr in;
	struct in6_addr in6;
};

/* DPVS's struct uoa_param_map: packed, 58 bytes. */
struct uoa_param_map {
	/* in */
	TOA_U16 af;			/* AF_INET or AF_INET6 (host order) */
	union toa_inet_addr saddr;	/* the source recvfrom() gave */
	union toa_inet_addr daddr;	/* the local address; zero: any */
	TOA_BE16 sport;			/* the source port recvfrom() gave */
	TOA_BE16 dport;			/* the local port */
	/* out */
	TOA_U16 real_af;		/* the client's family (host order) */
	union toa_inet_addr real_saddr;	/* the client */
	TOA_BE16 real_sport;		/* the client's port */
} __attribute__((__packed__));

#undef TOA_U16
#undef TOA_BE16

#endif /* _UAPI_LINUX_TOA_H */
