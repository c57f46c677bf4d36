/* tcp_rails.h — which networks ("rails") the tcp transport uses, and how a
 * link's data is spread over them.
 *
 * A rail is one network every node reaches the others on: with --tcp-if a
 * comma list, each element (an interface name or an IPv4 CIDR) is a rail;
 * without it, each IPv4 subnet of an interface that is up. Each leader
 * reports its rails and what it knows of their rate (the device's speed, or
 * a short timed probe from its ring predecessor where there is none); the
 * root keeps the rails every node has and the fastest of them (those within
 * a factor RAIL_KEEP_FACTOR of the best), and every leader uses that set.
 * The pure parts (parsing, the decision, the split) are unit-tested in
 * tests/test_rails.c. */
#ifndef P2PBCAST_TCP_RAILS_H
#define P2PBCAST_TCP_RAILS_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#define PB_TCP_MAX_RAILS 4

/* One element of --tcp-if. */
struct pb_tcp_if_spec {
    char name[IF_NAMESIZE]; /* interface name ("" for a CIDR) */
    int cidr;
    uint32_t net, mask;     /* CIDR, network order */
};

/* Parse "eth1", "10.0.0.0/8", "eth1,ib0,10.1.0.0/16" into at most max
 * elements. Returns the count (>= 1), or -1 with a reason: an empty
 * element, a bad CIDR, a name too long, a repeated element, too many. */
int pb_tcp_if_parse(const char *list, struct pb_tcp_if_spec *out, int max, char *err, size_t errlen);

/* One rail as this node sees it. */
struct pb_tcp_rail {
    uint64_t key;           /* equal on every node for one rail: the --tcp-if
                             * element's index, or subnet and mask */
    uint32_t addr;          /* our IPv4 address on it, network order */
    uint32_t mbit;          /* the device's speed, 0 unknown (veth, cloud) */
    uint32_t kbit;          /* the rate all nodes agreed on (the split's weight) */
    char ifname[IF_NAMESIZE];
};

/* This node's rails: one per --tcp-if element (specs, n > 0; each must match
 * an interface that is up with an IPv4 address), or with n == 0 every IPv4
 * subnet of an interface that is up (not loopback, not a local container
 * bridge), the default route's first. Returns the count, or -1 with err. */
int pb_tcp_rails_local(const struct pb_tcp_if_spec *specs, int n, struct pb_tcp_rail *out, int max, char *err,
                       size_t errlen);

/* The single interface of the tcp transport before rails, and still its
 * choice where rails do not apply: for `want` (one name or CIDR, or NULL:
 * the default route's interface, else any real one). */
int pb_tcp_pick_if(const char *want, uint32_t *addr, char *ifname, size_t ifnlen, char *err, size_t errlen);

/* The speed sysfs gives for a device, Mbit/s; 0 when it has none. */
uint32_t pb_tcp_if_mbit(const char *ifname);

/* What one leader tells the root: its rails and the rate it knows for each
 * (kbit/s, the lower of both ends' device speeds, or what its predecessor's
 * probe achieved; 0: nothing arrived, the rail does not work), and what the
 * probe measured whatever the device speeds say (0: not probed). */
struct pb_tcp_rail_report {
    uint32_t n;
    uint32_t kbit[PB_TCP_MAX_RAILS];
    uint32_t measured[PB_TCP_MAX_RAILS];
    uint64_t key[PB_TCP_MAX_RAILS];
};

/* The root's decision, the same on every leader. */
struct pb_tcp_rail_choice {
    uint32_t n;             /* rails to use; 0: none common, fall back */
    uint32_t kbit[PB_TCP_MAX_RAILS]; /* slowest node's rate, the split's weights */
    uint64_t key[PB_TCP_MAX_RAILS];
};

/* Keep a rail whose rate is at least the best one's divided by this. */
#define RAIL_KEEP_FACTOR 3

/* The rails every report has; of those the fast ones (all of them when
 * `all`, as for an explicit --tcp-if list), best first. */
void pb_tcp_rails_decide(const struct pb_tcp_rail_report *all, int n, int keep_all, struct pb_tcp_rail_choice *c);

/* Each leader's send rate for placement, from the reports of all n leaders
 * (leader l's successor l + 1 reports what l sent it): the sum of what was
 * measured on the chosen rails, or on the reports' first rail (the default
 * route's) when none was chosen. 0: unknown. send_kbit has n entries. */
void pb_tcp_rails_send_rates(const struct pb_tcp_rail_report *all, int n, const struct pb_tcp_rail_choice *c,
                             uint32_t *send_kbit);

/* The rails chosen once for the whole run (the rates phase, with the
 * send-rate probe) and handed to the transport, which then does not probe
 * again. */
struct pb_tcp_rail_set {
    int n;                  /* rails; 0: no network every node shares (one
                             * interface, as before rails); -1: failed (err) */
    struct pb_tcp_rail r[PB_TCP_MAX_RAILS];
    char err[320];
};

/* Which of n rails takes the next len bytes: the one that would be done
 * first with its backlog plus len at its rate (backlog[i] bytes still to
 * send, rate[i] any unit, 0 taken as 1). Deterministic: ties go to the
 * lower index. */
int pb_tcp_rail_pick(const uint64_t *backlog, const uint32_t *rate, int n, uint64_t len);

#endif
