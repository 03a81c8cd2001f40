"""Rule 8, safety: the target is either fully merged or unchanged; existing target rows
are never deleted or altered except the counters of rule 4; the target may be one of the
sources; running the same merge twice inserts nothing the second time.

(The runner checks in every case that the sources did not change and that no helper
table or dblink server is left, and runs every successful case a second time.)"""

R = "ops@conference-1-c1.example.com"
R2 = "dev@conference-2-c1.example.com"
BOB = "bob@example.com"

CASES = {
    "the_target_named_among_the_sources_adds_nothing_of_its_own": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t1"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 5,
                                "body_string": "t2"}],
             "tc_users": [{"room_jid": R, "real_jid": BOB}],
             "tc_timelog": [{"real_jid": BOB, "room_jid": R, "start": 0, "end": 1}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 1,
                                "body_string": "o1"}]},
        ],
        "sources": [1, "target"],
        "expect": {
            "rows": {"tc_msgarchive": [
                {"to_jid": R, "msg_id": 1, "body_string": "t1"},
                {"to_jid": R, "msg_id": 2, "sent_date": 5, "body_string": "t2"},
                {"to_jid": R, "msg_id": 3, "sent_date": 1, "body_string": "o1"}],
                "tc_users": [{"room_jid": R, "real_jid": BOB}],
                "tc_timelog": [{"real_jid": BOB, "room_jid": R, "start": 0, "end": 1}],
                "tc_rooms": [{"room_jid": R, "next_msg_id": 4}]},
            "counts": {"tc_msgarchive": {"read": [2, 1, 2], "inserted": 1, "duplicates": 2,
                                         "renumbered": 1},
                       "tc_users": {"inserted": 0, "duplicates": 1},
                       "tc_timelog": {"inserted": 0, "duplicates": 1},
                       "tc_rooms": {"inserted": 0, "duplicates": 1}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "running_the_same_merge_twice_inserts_nothing_the_second_time": {
        "inputs": [
            {},
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "a"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 1, "body_string": "b"}],
             "tc_messages": [{"room_jid": R, "msg_id": 2, "stamp": 1}],
             "tc_users": [{"room_jid": R, "real_jid": BOB}],
             "tc_timelog": [{"real_jid": BOB, "room_jid": R, "start": 0, "end": 1},
                            {"real_jid": BOB, "room_jid": R, "start": 0, "end": 1}]},
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 2, "body_string": "c"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 1,
                                "body_string": "b"}],
             "tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "outcast"}]},
        ],
        "expect": {
            "counts": {"tc_msgarchive": {"inserted": 3, "duplicates": 1, "renumbered": 1},
                       "tc_timelog": {"inserted": 2}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS",
                         "warning AFFILIATION_CONFLICT"},
            # the second run: every row is a duplicate of the target's (input 0)
            "again": {
                "counts": {"tc_msgarchive": {"read": [3, 2, 2], "inserted": 0, "duplicates": 4,
                                             "renumbered": 0},
                           "tc_messages": {"inserted": 0, "duplicates": 1},
                           "tc_timelog": {"inserted": 0, "duplicates": 2},
                           "tc_users": {"inserted": 0, "duplicates": 1, "conflicts": 1}},
                "findings": {"info DUPLICATE_ROWS", "warning AFFILIATION_CONFLICT"},
            },
        },
    },
    "a_refused_merge_leaves_the_target_as_it_was": {
        # much would be merged, but one room conflicts: nothing at all is written
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 2}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t"}],
             "tc_users": [{"room_jid": R, "real_jid": BOB}]},
            {"tc_rooms": [{"room_jid": R2, "next_msg_id": 2}],
             "tc_msgarchive": [{"to_jid": R2, "msg_id": 1, "body_string": "x"}],
             "tc_users": [{"room_jid": R, "real_jid": BOB, "affiliation": "outcast"}]},
            {"tc_rooms": [{"room_jid": R2, "type": "ad-hoc"}]},
        ],
        "expect": {
            "exit": 1,
            "rows": {"tc_rooms": [{"room_jid": R, "next_msg_id": 2}],
                     "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t"}],
                     "tc_users": [{"room_jid": R, "real_jid": BOB}]},
            "findings": {"error ROOM_CONFLICT", "warning AFFILIATION_CONFLICT",
                         "warning BAN_NOT_APPLIED"},
        },
    },
    "a_target_row_sharing_a_key_with_a_source_row_is_not_altered": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "target's"}],
             "tc_messages": [{"room_jid": R, "msg_id": 1, "msg": "target's"}],
             "aft_log": [{"aft_index": 1, "filename": "target's"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "source's"}],
             "tc_messages": [{"room_jid": R, "msg_id": 1, "msg": "source's"}],
             "aft_log": [{"aft_index": 1, "filename": "source's"}]},
        ],
        "options": {"tables": "tc,mft"},
        "expect": {
            "rows": {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "target's"},
                                       {"to_jid": R, "msg_id": 2,
                                        "body_string": "source's"}],
                     "tc_messages": [{"room_jid": R, "msg_id": 1, "msg": "target's"},
                                     {"room_jid": R, "msg_id": 2, "msg": "source's"}],
                     "aft_log": [{"aft_index": 1, "filename": "target's"},
                                 {"aft_index": 2, "filename": "source's"}]},
            "findings": {"info MSG_ID_COLLISION", "info AFT_INDEX_COLLISION"},
        },
    },
}
