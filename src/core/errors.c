/*
 * The error table, operation table and role names as functions.
 *
 * The tables themselves are X-macros in the public headers (errors.h and
 * jifen.h) so that the enum, the stable strings and the HTTP statuses cannot
 * drift apart; this file only expands them into arrays.
 */
#include <string.h>

#include "core.h"

typedef struct err_row {
    const char *code;
    const char *message;
    int status;
} err_row;

static const err_row err_rows[] = {
#define ERR_ROW(name, code, msg, status) {code, msg, status},
    JF_ERRNO_MAP(ERR_ROW)
#undef ERR_ROW
};

_Static_assert(sizeof(err_rows) / sizeof(err_rows[0]) == JF_ERR__COUNT, "one row per error");

static const err_row *err_lookup(jf_err err)
{
    if ((unsigned)err >= (unsigned)JF_ERR__COUNT)
        return &err_rows[JF_ERR_INTERNAL];
    return &err_rows[err];
}

const char *jf_err_code(jf_err err)
{
    return err_lookup(err)->code;
}

const char *jf_err_message(jf_err err)
{
    return err_lookup(err)->message;
}

int jf_err_http_status(jf_err err)
{
    return err_lookup(err)->status;
}

typedef struct op_row {
    const char *name;
    bool is_write;
    unsigned roles;
} op_row;

static const op_row op_rows[] = {
#define OP_ROW(name, str, is_write, roles) {str, is_write, roles},
    JF_OP_MAP(OP_ROW)
#undef OP_ROW
};

_Static_assert(sizeof(op_rows) / sizeof(op_rows[0]) == JF_OP__COUNT, "one row per op");

const char *jf_op_name(jf_op op)
{
    if ((unsigned)op >= (unsigned)JF_OP__COUNT)
        return "unknown";
    return op_rows[op].name;
}

bool jf_op_is_write(jf_op op)
{
    return (unsigned)op < (unsigned)JF_OP__COUNT && op_rows[op].is_write;
}

bool jf_op_allows(jf_op op, jf_role role)
{
    if ((unsigned)op >= (unsigned)JF_OP__COUNT || role == JF_ROLE_NONE)
        return false;
    return (op_rows[op].roles & JF_ROLE_BIT(role)) != 0;
}

bool jf_op_is_points(jf_op op)
{
    switch (op) {
    case JF_OP_EARN:
    case JF_OP_REDEEM:
    case JF_OP_ADJUST:
    case JF_OP_TRANSFER:
    case JF_OP_HOLD:
    case JF_OP_HOLD_CAPTURE:
    case JF_OP_HOLD_VOID:
    case JF_OP_REVERSE:
        return true;
    default:
        return false;
    }
}

bool jf_op_requires_idempotency(jf_op op)
{
    return jf_op_is_points(op) || op == JF_OP_MEMBER_EVENT || op == JF_OP_ORDER_REFUND ||
           op == JF_OP_CHECK_IN;
}

static const char *const role_names[] = {"none", "readonly", "pos", "operator", "admin"};

const char *jf_role_name(jf_role role)
{
    if ((unsigned)role > JF_ROLE_ADMIN)
        return "none";
    return role_names[role];
}

jf_role jf_role_parse(const char *name)
{
    if (name == NULL)
        return JF_ROLE_NONE;
    for (int r = JF_ROLE_READONLY; r <= JF_ROLE_ADMIN; r++)
        if (strcmp(name, role_names[r]) == 0)
            return (jf_role)r;
    return JF_ROLE_NONE;
}

const char *jf_version(void)
{
    return "0.1.0";
}
