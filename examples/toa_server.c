// SPDX-License-Identifier: GPL-2.0
/*
 * A small TCP server that prints what an application learns about each
 * client through toa: accept(), getpeername() and, for NAT64 (an IPv6 client
 * on an IPv4 socket), getsockopt(IPPROTO_IP, TOA_SO_GET_LOOKUP).
 *
 *   cc -Wall -O2 -I include/uapi examples/toa_server.c -o toa_server
 *   ./toa_server ADDR PORT [COUNT]
 *
 * For each of COUNT (default 1) connections it prints one line:
 *   accept=ADDR getpeername=ADDR lookup=ADDR|ERRNO
 * where ADDR is a.b.c.d:port or [v6]:port.
 */
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

int main(int argc, char **argv)
{
	const struct addrinfo hints = {
		.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
		.ai_socktype = SOCK_STREAM,
	};
	struct addrinfo *ai;
	int fd, one = 1, count, i;

	if (argc < 3) {
		fprintf(stderr, "usage: %s ADDR PORT [COUNT]\n", argv[0]);
		return 2;
	}
	count = argc > 3 ? atoi(argv[3]) : 1;
	if (getaddrinfo(argv[1], argv[2], &hints, &ai))
		return 2;

	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128)) {
		perror("listen");
		return 1;
	}
	freeaddrinfo(ai);
	printf("ready\n");
	fflush(stdout);

	for (i = 0; i < count; i++) {
		struct sockaddr_storage accepted, peer;
		socklen_t alen = sizeof(accepted), plen = sizeof(peer);
		struct toa_nat64_peer toa;
		socklen_t tlen = sizeof(toa);
		char a[80], p[80], l[80];
		int c = accept(fd, (struct sockaddr *)&accepted, &alen);

		if (c < 0 || getpeername(c, (struct sockaddr *)&peer, &plen)) {
			perror("accept/getpeername");
			return 1;
		}
		format_addr(&accepted, a, sizeof(a));
		format_addr(&peer, p, sizeof(p));
		if (getsockopt(c, IPPROTO_IP, TOA_SO_GET_LOOKUP, &toa, &tlen) == 0) {
			char ip[INET6_ADDRSTRLEN];

			inet_ntop(AF_INET6, &toa.saddr, ip, sizeof(ip));
			snprintf(l, sizeof(l), "[%s]:%u", ip, ntohs(toa.sport));
		} else {
			snprintf(l, sizeof(l), "%s", errno == ENOENT ? "ENOENT" :
				 errno == ENOPROTOOPT ? "ENOPROTOOPT" : strerror(errno));
		}
		printf("accept=%s getpeername=%s lookup=%s\n", a, p, l);
		fflush(stdout);
		close(c);
	}
	close(fd);
	return 0;
}
