// SPDX-License-Identifier: GPL-2.0
/*
 * toa_owner: a test module standing in for a kernel user of sk_user_data
 * (DLM, the iSCSI target, NVMe-oF, sunrpc keep their state there): a
 * kernel TCP listener on [::]:port (dual-stack) whose sk_user_data is its
 * own, so every child the kernel creates for it inherits the word before
 * toa sees it. Writing 1 to the "accept" parameter accepts one connection
 * (non-blocking), asks kernel_getpeername() for its peer and checks the
 * child still carries the owner's word; the "peer" parameter then reads
 * "<address> owner=kept" (or owner=lost, or an error). Used by
 * toa-vmtest's "records: a kernel user's sk_user_data" case.
 */
#include <linux/in6.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/net.h>
#include <net/sock.h>

/* kernel_bind() takes a struct sockaddr_unsized in newer kernels. */
#ifdef TOA_SOCKADDR_UNSIZED
#define TOA_BIND_ADDR(a) ((struct sockaddr_unsized *)(a))
#else
#define TOA_BIND_ADDR(a) ((struct sockaddr *)(a))
#endif

static int port = 7100;
module_param(port, int, 0444);
MODULE_PARM_DESC(port, "TCP port of the kernel listener");

static struct socket *toa_owner_listener;
static DEFINE_MUTEX(toa_owner_mutex);
static char toa_owner_peer[96] = "none";
/* The owner's word: any pointer of this module's. */
static int toa_owner_marker;

static void toa_owner_set(struct sock *sk)
{
	write_lock_bh(&sk->sk_callback_lock);
	rcu_assign_sk_user_data(sk, &toa_owner_marker);
	write_unlock_bh(&sk->sk_callback_lock);
}

static int toa_owner_accept(const char *val, const struct kernel_param *kp)
{
	struct sockaddr_storage addr = {};
	struct socket *child = NULL;
	bool kept;
	int err;

	mutex_lock(&toa_owner_mutex);
	err = kernel_accept(toa_owner_listener, &child, O_NONBLOCK);
	if (err) {
		snprintf(toa_owner_peer, sizeof(toa_owner_peer), "accept %d", err);
		goto out;
	}
	kept = rcu_access_pointer(child->sk->sk_user_data) == (void *)&toa_owner_marker;
	err = kernel_getpeername(child, (struct sockaddr *)&addr);
	if (err < 0)
		snprintf(toa_owner_peer, sizeof(toa_owner_peer), "getpeername %d", err);
	else
		snprintf(toa_owner_peer, sizeof(toa_owner_peer), "%pISpc owner=%s", &addr,
			 kept ? "kept" : "lost");
	sock_release(child);
	err = 0;
out:
	mutex_unlock(&toa_owner_mutex);
	return err;
}

static int toa_owner_peer_get(char *buf, const struct kernel_param *kp)
{
	int n;

	mutex_lock(&toa_owner_mutex);
	n = sysfs_emit(buf, "%s\n", toa_owner_peer);
	mutex_unlock(&toa_owner_mutex);
	return n;
}

static const struct kernel_param_ops toa_owner_accept_ops = {
	.set = toa_owner_accept,
	.get = toa_owner_peer_get,
};
module_param_cb(accept, &toa_owner_accept_ops, NULL, 0644);
MODULE_PARM_DESC(accept, "Write: accept one connection; read: its peer and whether the owner's word stayed");

static int __init toa_owner_init(void)
{
	struct sockaddr_in6 sin6 = {
		.sin6_family = AF_INET6,
		.sin6_addr = IN6ADDR_ANY_INIT,
	};
	int err;

	if (port <= 0 || port > 65535)
		return -EINVAL;
	sin6.sin6_port = htons(port);
	err = sock_create_kern(&init_net, AF_INET6, SOCK_STREAM, IPPROTO_TCP, &toa_owner_listener);
	if (err)
		return err;
	sock_set_reuseaddr(toa_owner_listener->sk);
	err = kernel_bind(toa_owner_listener, TOA_BIND_ADDR(&sin6), sizeof(sin6));
	if (!err)
		err = kernel_listen(toa_owner_listener, 16);
	if (err) {
		sock_release(toa_owner_listener);
		return err;
	}
	toa_owner_set(toa_owner_listener->sk);
	return 0;
}

static void __exit toa_owner_exit(void)
{
	sock_release(toa_owner_listener);
}

module_init(toa_owner_init);
module_exit(toa_owner_exit);
MODULE_DESCRIPTION("toa test: a kernel user of sk_user_data on a TCP listener");
MODULE_LICENSE("GPL");
