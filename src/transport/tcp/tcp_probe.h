/* tcp_probe.h — the rails this leader uses, chosen at set-up with the
 * others (see tcp_probe.c). */
#ifndef P2PBCAST_TCP_PROBE_H
#define P2PBCAST_TCP_PROBE_H

#include "tcp_rails.h"
#include "transport.h"

/* Collective over the leaders. specs/nspecs: the --tcp-if list (0: every
 * network of this node). probe_all: probe every rail, whatever its device
 * speed (placement wants the send rates); else only those of unknown speed.
 * send_kbit: on the root, nleaders entries for each leader's send rate
 * (pb_tcp_rails_send_rates), else NULL. Fills rails[] (PB_TCP_MAX_RAILS),
 * best first, each with the agreed rate; returns how many (0: no network is
 * shared by all, fall back to one interface), or -1 with err. */
int pb_tcp_rails_choose(const struct pb_transport_cfg *cfg, const struct pb_tcp_if_spec *specs, int nspecs,
                        int probe_all, uint32_t *send_kbit, struct pb_tcp_rail *rails, char *err, size_t errlen);

#endif
