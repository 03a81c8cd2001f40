"""Rule 5, members (tc_users, key room_jid + real_jid): identical rows collapse;
different rows: the owner's wins (AFFILIATION_CONFLICT, warning), except that an outcast
from any input beats a non-outcast row that comes from a source (a merge never lifts a
ban). Target rows are never altered: a ban that could only be applied by altering one is
reported instead (BAN_NOT_APPLIED)."""

R = "ops@conference-1-c1.example.com"
R2 = "dev@conference-2-c1.example.com"
BOB = "bob@example.com"
EVE = "eve@example.com"

CASES = {
    "identical_member_rows_collapse": {
        "inputs": [
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "admin"}]},
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "admin"}]},
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "admin"}]},
        ],
        "expect": {
            "rows": {"tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "admin"}]},
            "counts": {"tc_users": {"read": [1, 1, 1], "inserted": 0, "duplicates": 2,
                                    "conflicts": 0}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
    "the_first_inputs_row_wins_an_affiliation_conflict": {
        "inputs": [
            {},
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "member"}]},
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "admin",
                           "role": "moderator"}]},
        ],
        "expect": {
            "rows": {"tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "member"}]},
            "counts": {"tc_users": {"inserted": 1, "duplicates": 0, "conflicts": 1}},
            "findings": {"warning AFFILIATION_CONFLICT"},
        },
    },
    "the_targets_row_wins_a_difference_in_nick_only": {
        "inputs": [
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "nick_jid": f"{R}/bob"}]},
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "nick_jid": f"{R}/bobby"},
                          {"room_jid": R, "real_jid": EVE}]},
        ],
        "expect": {
            "rows": {"tc_users": [{"room_jid": R, "real_jid": BOB, "nick_jid": f"{R}/bob"},
                                  {"room_jid": R, "real_jid": EVE}]},
            "counts": {"tc_users": {"inserted": 1, "conflicts": 1}},
            "findings": {"warning AFFILIATION_CONFLICT"},
        },
    },
    "a_difference_in_reason_only_is_a_conflict_null_reason_included": {
        "inputs": [
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "reason": None},
                          {"room_jid": R, "real_jid": EVE, "reason": "x"}]},
            {"tc_users": [{"room_jid": R, "real_jid": BOB, "reason": "late"},
                          {"room_jid": R, "real_jid": EVE, "reason": "x"}]},
        ],
        "expect": {
            "rows": {"tc_users": [{"room_jid": R, "real_jid": BOB, "reason": None},
                                  {"room_jid": R, "real_jid": EVE, "reason": "x"}]},
            "counts": {"tc_users": {"inserted": 0, "duplicates": 1, "conflicts": 1}},
            "findings": {"warning AFFILIATION_CONFLICT", "info DUPLICATE_ROWS"},
        },
    },
    "a_later_sources_ban_beats_an_earlier_sources_member_row": {
        "inputs": [
            {},
            {"tc_users": [{"room_jid": R, "real_jid": EVE, "affiliation": "member"}]},
            {"tc_users": [{"room_jid": R, "real_jid": EVE, "affiliation": "outcast",
                           "role": "none", "reason": "spam"}]},
        ],
        "expect": {
            "rows": {"tc_users": [{"room_jid": R, "real_jid": EVE, "affiliation": "outcast",
                                   "role": "none", "reason": "spam"}]},
            "counts": {"tc_users": {"inserted": 1, "conflicts": 1}},
            "findings": {"warning AFFILIATION_CONFLICT"},
        },
    },
    "a_ban_against_the_targets_member_row_is_reported_not_applied": {
        "inputs": [
            {"tc_users": [{"room_jid": R, "real_jid": EVE, "affiliation": "member"}]},
            {"tc_users": [{"room_jid": R, "real_jid": EVE, "affiliation": "outcast"}]},
        ],
        "expect": {
            "rows": {"tc_users": [{"room_jid": R, "real_jid": EVE, "affiliation": "member"}]},
            "counts": {"tc_users": {"inserted": 0, "conflicts": 1}},
            "findings": {"warning AFFILIATION_CONFLICT", "warning BAN_NOT_APPLIED"},
        },
    },
    "the_targets_ban_stays": {
        "inputs": [
            {"tc_users": [{"room_jid": R, "real_jid": EVE, "affiliation": "outcast"}]},
            {"tc_users": [{"room_jid": R, "real_jid": EVE, "affiliation": "owner"}]},
        ],
        "expect": {
            "rows": {"tc_users": [{"room_jid": R, "real_jid": EVE,
                                   "affiliation": "outcast"}]},
            "counts": {"tc_users": {"inserted": 0, "conflicts": 1}},
            "findings": {"warning AFFILIATION_CONFLICT"},
        },
    },
    "members_of_rooms_one_input_holds_are_copied": {
        "inputs": [
            {"tc_users": [{"room_jid": R, "real_jid": BOB}]},
            {"tc_users": [{"room_jid": R2, "real_jid": BOB, "affiliation": "owner"},
                          {"room_jid": R2, "real_jid": EVE, "affiliation": "outcast"}]},
        ],
        "expect": {
            "rows": {"tc_users": [{"room_jid": R, "real_jid": BOB},
                                  {"room_jid": R2, "real_jid": BOB, "affiliation": "owner"},
                                  {"room_jid": R2, "real_jid": EVE,
                                   "affiliation": "outcast"}]},
            "counts": {"tc_users": {"inserted": 2, "duplicates": 0, "conflicts": 0}},
            "findings": set(),
        },
    },
}
