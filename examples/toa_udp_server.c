// SPDX-License-Identifier: GPL-2.0
/*
 * A small UDP echo server that prints what an application learns about each
 * client through toa: the source recvfrom()/recvmsg()/recvmmsg() gives
 * (toa shows the client there) and, as applications written for DPVS ask,
 * getsockopt(IPPROTO_IP, UOA_SO_GET_LOOKUP). It answers each datagram with
 * its payload through sendto()/sendmsg()/sendmmsg() (toa sends it back
 * through the balancer).
 *
 *   cc -Wall -O2 -I include/uapi examples/toa_udp_server.c -o toa_udp_server
 *   ./toa_udp_server ADDR PORT [COUNT [recvfrom|recvmsg|recvmmsg]]
 *
 * For each of COUNT (default 1) datagrams it prints one line:
 *   from=ADDR uoa=ADDR|ERRNO len=N
 * where ADDR is a.b.c.d:port or [v6]:port. recvmmsg reads up to 8 at once.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/toa.h>

#define BATCH 8

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(out, size, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(out, size, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		snprintf(out, size, "family-%d", ss->ss_family);
	}
}

/* What toa's UOA lookup says about a datagram from `from` to local port
 * `port` (any local address). */
static void uoa(int fd, const struct sockaddr_storage *from, unsigned short port, char *out,
		size_t size)
{
	struct uoa_param_map map;
	socklen_t len = sizeof(map);
	struct sockaddr_storage real;

	memset(&map, 0, sizeof(map));
	map.af = from->ss_family;
	if (from->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)from;

		map.saddr.in = sin->sin_addr;
		map.sport = sin->sin_port;
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)from;

		map.saddr.in6 = sin6->sin6_addr;
		map.sport = sin6->sin6_port;
	}
	map.dport = htons(port);
	if (getsockopt(fd, IPPROTO_IP, UOA_SO_GET_LOOKUP, &map, &len)) {
		snprintf(out, size, "%s", errno == ENOENT ? "ENOENT" :
			 errno == ENOPROTOOPT ? "ENOPROTOOPT" : strerror(errno));
		return;
	}
	memset(&real, 0, sizeof(real));
	real.ss_family = map.real_af;
	if (map.real_af == AF_INET) {
		((struct sockaddr_in *)&real)->sin_addr = map.real_saddr.in;
		((struct sockaddr_in *)&real)->sin_port = map.real_sport;
	} else {
		((struct sockaddr_in6 *)&real)->sin6_addr = map.real_saddr.in6;
		((struct sockaddr_in6 *)&real)->sin6_port = map.real_sport;
	}
	format_addr(&real, out, size);
}

static void report(int fd, const struct sockaddr_storage *from, unsigned short port, size_t len)
{
	char f[80], u[80];

	format_addr(from, f, sizeof(f));
	uoa(fd, from, port, u, sizeof(u));
	printf("from=%s uoa=%s len=%zu\n", f, u, len);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const struct addrinfo hints = {
		.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
		.ai_socktype = SOCK_DGRAM,
	};
	const char *mode;
	struct addrinfo *ai;
	unsigned short port;
	int fd, count, i;

	if (argc < 3) {
		fprintf(stderr, "usage: %s ADDR PORT [COUNT [recvfrom|recvmsg|recvmmsg]]\n", argv[0]);
		return 2;
	}
	count = argc > 3 ? atoi(argv[3]) : 1;
	mode = argc > 4 ? argv[4] : "recvfrom";
	port = (unsigned short)atoi(argv[2]);
	if (getaddrinfo(argv[1], argv[2], &hints, &ai))
		return 2;
	fd = socket(ai->ai_family, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen)) {
		perror("bind");
		return 1;
	}
	freeaddrinfo(ai);
	printf("ready\n");
	fflush(stdout);

	for (i = 0; i < count;) {
		char buf[BATCH][2048];
		struct sockaddr_storage from[BATCH];
		struct iovec iov[BATCH];
		struct mmsghdr msgs[BATCH];
		int n, k;

		memset(msgs, 0, sizeof(msgs));
		for (k = 0; k < BATCH; k++) {
			iov[k].iov_base = buf[k];
			iov[k].iov_len = sizeof(buf[k]);
			msgs[k].msg_hdr.msg_name = &from[k];
			msgs[k].msg_hdr.msg_namelen = sizeof(from[k]);
			msgs[k].msg_hdr.msg_iov = &iov[k];
			msgs[k].msg_hdr.msg_iovlen = 1;
		}
		if (!strcmp(mode, "recvmmsg")) {
			n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
			if (n < 0) {
				perror("recvmmsg");
				return 1;
			}
			for (k = 0; k < n; k++) {
				report(fd, &from[k], port, msgs[k].msg_len);
				iov[k].iov_len = msgs[k].msg_len;
			}
			if (sendmmsg(fd, msgs, n, 0) != n) {
				perror("sendmmsg");
				return 1;
			}
			i += n;
			continue;
		}
		if (!strcmp(mode, "recvmsg")) {
			ssize_t len = recvmsg(fd, &msgs[0].msg_hdr, 0);

			if (len < 0) {
				perror("recvmsg");
				return 1;
			}
			report(fd, &from[0], port, len);
			iov[0].iov_len = len;
			if (sendmsg(fd, &msgs[0].msg_hdr, 0) != len) {
				perror("sendmsg");
				return 1;
			}
		} else {
			socklen_t flen = sizeof(from[0]);
			ssize_t len = recvfrom(fd, buf[0], sizeof(buf[0]), 0,
					       (struct sockaddr *)&from[0], &flen);

			if (len < 0) {
				perror("recvfrom");
				return 1;
			}
			report(fd, &from[0], port, len);
			if (sendto(fd, buf[0], len, 0, (struct sockaddr *)&from[0], flen) != len) {
				perror("sendto");
				return 1;
			}
		}
		i++;
	}
	close(fd);
	return 0;
}
