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
 */
#ifndef _UAPI_LINUX_TOA_H
#define _UAPI_LINUX_TOA_H

#ifdef __KERNEL__
#include <linux/in6.h>
#include <linux/types.h>
#else
#include <netinet/in.h>
#include <stdint.h>
#endif

/* getsockopt(fd, IPPROTO_IP, TOA_SO_GET_LOOKUP, ...) */
#define TOA_SO_GET_LOOKUP 4096

/* What TOA_SO_GET_LOOKUP returns: the client's address and port. */
struct toa_nat64_peer {
	struct in6_addr saddr;	/* IPv6, or IPv4-mapped ::ffff:a.b.c.d */
#ifdef __KERNEL__
	__be16 sport;		/* network byte order */
#else
	uint16_t sport;		/* network byte order */
#endif
};

#endif /* _UAPI_LINUX_TOA_H */
