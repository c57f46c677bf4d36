/* schedule.c — the table of schedules (schedule.h): one entry per
 * sched_*.c, indexed by enum pb_schedule. */
#include "schedule.h"

#include <string.h>

static const struct pb_sched *const schedules[] = {
    [PB_SCHED_RING] = &pb_sched_ring,
    [PB_SCHED_TREE] = &pb_sched_tree,
    [PB_SCHED_SHARED] = &pb_sched_shared,
    [PB_SCHED_READTREE] = &pb_sched_readtree,
};

#define NSCHED ((int)(sizeof schedules / sizeof schedules[0]))

const struct pb_sched *pb_sched_of(int schedule)
{
    return schedule >= 0 && schedule < NSCHED && schedules[schedule] ? schedules[schedule] : &pb_sched_ring;
}

const char *pb_schedule_name(int schedule)
{
    return pb_sched_of(schedule)->name;
}

int pb_schedule_parse(const char *s)
{
    if (!s || !strcmp(s, "auto"))
        return -2;
    for (int i = 0; i < NSCHED; i++)
        if (schedules[i] && schedules[i]->selectable && !strcmp(s, schedules[i]->name))
            return i;
    return -1;
}
