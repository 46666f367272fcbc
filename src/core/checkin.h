/*
 * Daily check-in (签到): POST /v1/members/{id}/check-in once per local day
 * of the program's time zone, with a streak, points from "check_in" rules,
 * and GET /v1/members/{id}/check-in?month=YYYY-MM for the month's calendar
 * (docs/RULES.md, Check-in).
 */
#ifndef JF_CHECKIN_H
#define JF_CHECKIN_H

#include "core.h"

extern const jf_op_impl jf_op_check_in, jf_op_check_in_calendar;

#endif
