"""Rule 3, recent messages (tc_messages, key room_jid + msg_id): the archive's rule; an id
renumbered in the archive maps to the same new id here. A recent message with an archive
row (same input, room and old id) follows that row's verdict: kept and renumbered with
it, or dropped with it as a duplicate; one without an archive row is judged on its own."""

R = "ops@conference-1-c1.example.com"
R2 = "dev@conference-2-c1.example.com"

CASES = {
    "recent_rows_take_the_archives_new_ids": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t"}],
             "tc_messages": [{"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>t</m>"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 2, "body_string": "a"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 1,
                                "body_string": "b"}],
             "tc_messages": [{"room_jid": R, "msg_id": 1, "stamp": 2, "msg": "<m>a</m>"},
                             {"room_jid": R, "msg_id": 2, "stamp": 1, "msg": "<m>b</m>"}]},
        ],
        "expect": {
            "rows": {
                "tc_msgarchive": [
                    {"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t"},
                    {"to_jid": R, "msg_id": 2, "sent_date": 1, "body_string": "b"},
                    {"to_jid": R, "msg_id": 3, "sent_date": 2, "body_string": "a"}],
                "tc_messages": [
                    {"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>t</m>"},
                    {"room_jid": R, "msg_id": 2, "stamp": 1, "msg": "<m>b</m>"},
                    {"room_jid": R, "msg_id": 3, "stamp": 2, "msg": "<m>a</m>"}]},
            "counts": {"tc_messages": {"inserted": 2, "duplicates": 0, "renumbered": 2},
                       "tc_msgarchive": {"inserted": 2, "renumbered": 2}},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
    "only_the_latest_recent_rows_still_map_with_the_archive": {
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 9, "body_string": "t"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 1, "body_string": "a"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 2, "body_string": "b"},
                               {"to_jid": R, "msg_id": 3, "sent_date": 3,
                                "body_string": "c"}],
             "tc_messages": [{"room_jid": R, "msg_id": 3, "stamp": 3, "msg": "<m>c</m>"}]},
        ],
        "expect": {
            "rows": {"tc_messages": [{"room_jid": R, "msg_id": 4, "stamp": 3,
                                      "msg": "<m>c</m>"}]},
            "counts": {"tc_messages": {"inserted": 1, "renumbered": 1},
                       "tc_msgarchive": {"inserted": 3, "renumbered": 3}},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
    "recent_row_dropped_with_its_duplicate_archive_row": {
        # the target's tc_messages rotated the message out; its archive row is there:
        # the source's archive row is a duplicate, and its recent row goes with it
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "x"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 5, "sent_date": 0, "body_string": "x"}],
             "tc_messages": [{"room_jid": R, "msg_id": 5, "stamp": 0, "msg": "<m>x</m>"}]},
        ],
        "expect": {
            "rows": {"tc_messages": [],
                     "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0,
                                        "body_string": "x"}]},
            "counts": {"tc_messages": {"inserted": 0, "duplicates": 1, "renumbered": 0},
                       "tc_msgarchive": {"inserted": 0, "duplicates": 1}},
            "findings": {"info DUPLICATE_ROWS"},
        },
    },
    "recent_row_kept_with_its_kept_archive_row_though_equal_to_a_target_row": {
        # the source's recent row equals the target's in every column, but its archive
        # row is a different message: kept and renumbered together
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t"}],
             "tc_messages": [{"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>x</m>"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "s"}],
             "tc_messages": [{"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>x</m>"}]},
        ],
        "expect": {
            "rows": {
                "tc_msgarchive": [
                    {"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t"},
                    {"to_jid": R, "msg_id": 2, "sent_date": 0, "body_string": "s"}],
                "tc_messages": [
                    {"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>x</m>"},
                    {"room_jid": R, "msg_id": 2, "stamp": 0, "msg": "<m>x</m>"}]},
            "counts": {"tc_messages": {"inserted": 1, "duplicates": 0, "renumbered": 1}},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
    "recent_row_without_an_archive_row_is_judged_on_its_own": {
        "inputs": [
            {"tc_messages": [{"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>a</m>"}]},
            {"tc_messages": [{"room_jid": R, "msg_id": 3, "stamp": 0, "msg": "<m>a</m>"},
                             {"room_jid": R, "msg_id": 4, "stamp": 1, "msg": "<m>b</m>"}]},
        ],
        "expect": {
            "rows": {"tc_messages": [
                {"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>a</m>"},
                {"room_jid": R, "msg_id": 2, "stamp": 1, "msg": "<m>b</m>"}]},
            "counts": {"tc_messages": {"inserted": 1, "duplicates": 1, "renumbered": 1}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "recent_rows_of_a_room_one_input_holds_keep_their_ids": {
        "inputs": [
            {"tc_messages": [{"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>a</m>"}]},
            {"tc_messages": [{"room_jid": R2, "msg_id": 1, "stamp": 0, "msg": "<m>a</m>"},
                             {"room_jid": R2, "msg_id": 40, "stamp": 1, "msg": "<m>b</m>"}]},
        ],
        "expect": {
            "rows": {"tc_messages": [
                {"room_jid": R, "msg_id": 1, "stamp": 0, "msg": "<m>a</m>"},
                {"room_jid": R2, "msg_id": 1, "stamp": 0, "msg": "<m>a</m>"},
                {"room_jid": R2, "msg_id": 40, "stamp": 1, "msg": "<m>b</m>"}]},
            "counts": {"tc_messages": {"inserted": 2, "duplicates": 0, "renumbered": 0}},
            "findings": set(),
        },
    },
    "renumbering_uses_the_highest_id_of_either_table": {
        # the owner's highest id is in tc_messages (its archive is behind): new ids above it
        "inputs": [
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t"}],
             "tc_messages": [{"room_jid": R, "msg_id": 6, "stamp": 1, "msg": "<m>t6</m>"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 2, "body_string": "s"}],
             "tc_messages": [{"room_jid": R, "msg_id": 1, "stamp": 2, "msg": "<m>s</m>"}]},
        ],
        "expect": {
            "rows": {
                "tc_msgarchive": [
                    {"to_jid": R, "msg_id": 1, "sent_date": 0, "body_string": "t"},
                    {"to_jid": R, "msg_id": 7, "sent_date": 2, "body_string": "s"}],
                "tc_messages": [
                    {"room_jid": R, "msg_id": 6, "stamp": 1, "msg": "<m>t6</m>"},
                    {"room_jid": R, "msg_id": 7, "stamp": 2, "msg": "<m>s</m>"}]},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
}
