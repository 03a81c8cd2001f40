"""Rule 4, counters: after the merge, for every room, next_msg_id is greater than every
msg_id of the room in tc_msgarchive and tc_messages and never lower than the owner's;
start_msg_id is the lowest id kept."""

R = "ops@conference-1-c1.example.com"
R2 = "dev@conference-2-c1.example.com"

CASES = {
    "next_msg_id_rises_above_the_renumbered_ids": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "start_msg_id": 1, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t1"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 1,
                                "body_string": "t2"}]},
            {"tc_rooms": [{"room_jid": R, "start_msg_id": 1, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 2, "body_string": "s1"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 3,
                                "body_string": "s2"}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "start_msg_id": 1, "next_msg_id": 5}]},
            "counts": {"tc_rooms": {"duplicates": 1, "counters_updated": 1}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "next_msg_id_is_never_lowered_below_the_owners": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 100}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t1"}]},
            {"tc_rooms": [{"room_jid": R, "next_msg_id": 2}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 1,
                                "body_string": "s1"}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "next_msg_id": 100}],
                     "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "t1"},
                                       {"to_jid": R, "msg_id": 2, "sent_date": 1,
                                        "body_string": "s1"}]},
            "counts": {"tc_rooms": {"counters_updated": 0}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "a_stale_counter_of_a_room_one_source_holds_is_repaired": {
        "inputs": [
            {},
            {"tc_rooms": [{"room_jid": R2, "start_msg_id": 1, "next_msg_id": 1}],
             "tc_msgarchive": [{"to_jid": R2, "msg_id": 3, "body_string": "a"}],
             "tc_messages": [{"room_jid": R2, "msg_id": 4, "stamp": 1}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R2, "start_msg_id": 3, "next_msg_id": 5}]},
            "findings": set(),
        },
    },
    "a_room_without_messages_keeps_its_counters": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "start_msg_id": 4, "next_msg_id": 9}]},
            {"tc_rooms": [{"room_jid": R2, "start_msg_id": 5, "next_msg_id": 7}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "start_msg_id": 4, "next_msg_id": 9},
                                  {"room_jid": R2, "start_msg_id": 5, "next_msg_id": 7}]},
            "counts": {"tc_rooms": {"inserted": 1, "counters_updated": 0}},
            "findings": set(),
        },
    },
    "start_msg_id_is_the_lowest_id_kept_of_a_later_owner": {
        # the first source owns the room (its ids 3, 4 stay); the second's row gets 5
        "inputs": [
            {},
            {"tc_rooms": [{"room_jid": R, "start_msg_id": 3, "next_msg_id": 5}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 3, "body_string": "a"},
                               {"to_jid": R, "msg_id": 4, "sent_date": 1,
                                "body_string": "b"}]},
            {"tc_rooms": [{"room_jid": R, "start_msg_id": 1, "next_msg_id": 2}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "sent_date": 2,
                                "body_string": "c"}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "start_msg_id": 3, "next_msg_id": 6}],
                     "tc_msgarchive": [{"to_jid": R, "msg_id": 3, "body_string": "a"},
                                       {"to_jid": R, "msg_id": 4, "sent_date": 1,
                                        "body_string": "b"},
                                       {"to_jid": R, "msg_id": 5, "sent_date": 2,
                                        "body_string": "c"}]},
            # the second source's room row differs in its counters only: a duplicate
            "counts": {"tc_rooms": {"inserted": 1, "duplicates": 1, "conflicts": 0}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "a_target_rooms_start_msg_id_is_lowered_to_the_lowest_id_kept": {
        # the target's room has no message rows (history purged, start 5, next 5): the
        # source's rows are numbered above the room's highest id, none, so from 1; start
        # becomes the lowest id kept, next stays the owner's
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "start_msg_id": 5, "next_msg_id": 5}]},
            {"tc_rooms": [{"room_jid": R, "start_msg_id": 1, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "a"},
                               {"to_jid": R, "msg_id": 2, "sent_date": 1,
                                "body_string": "b"}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "start_msg_id": 1, "next_msg_id": 5}],
                     "tc_msgarchive": [{"to_jid": R, "msg_id": 1, "body_string": "a"},
                                       {"to_jid": R, "msg_id": 2, "sent_date": 1,
                                        "body_string": "b"}]},
            "counts": {"tc_rooms": {"conflicts": 0, "counters_updated": 1}},
            "findings": {"info MSG_ID_COLLISION", "info DUPLICATE_ROWS"},
        },
    },
    "a_target_rooms_start_msg_id_is_never_raised": {
        "inputs": [
            {"tc_rooms": [{"room_jid": R, "start_msg_id": 1, "next_msg_id": 3}],
             "tc_msgarchive": [{"to_jid": R, "msg_id": 2, "body_string": "t"}]},
            {"tc_msgarchive": [{"to_jid": R, "msg_id": 2, "sent_date": 1,
                                "body_string": "s"}]},
        ],
        "expect": {
            "rows": {"tc_rooms": [{"room_jid": R, "start_msg_id": 1, "next_msg_id": 4}]},
            "findings": {"info MSG_ID_COLLISION"},
        },
    },
}
